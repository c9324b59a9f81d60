"""Exported models (``model.json`` + ``params/``): saving, loading and checking parameters."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from edsr_jax import atomic, models, storage
from edsr_jax import overwrite as overwrite_rule
from edsr_jax.checkpoint import layout, manager
from edsr_jax.errors import UserError, listing, quote

# Files an Orbax PyTree checkpoint (OCDBT layout, as save_model writes it) cannot be read without.
ORBAX_REQUIRED_FILES = ("_METADATA", "manifest.ocdbt")


def save_model(
    directory: str | os.PathLike,
    model: models.SRModel,
    variables: Any,
    *,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> None:
    """Writes ``model`` and ``variables`` (as float32) to ``directory`` as an exported model, atomically.

    Call it from one process only. ``variables`` holds ``"params"`` (and ``"batch_stats"`` for a
    batch-norm model); ``metadata`` is stored in ``model.json``; ``overwrite`` replaces an exported
    model already there (:mod:`edsr_jax.overwrite`).

    Raises:
      UserError: ``directory`` may not be written, or the parameters do not match ``model``.
    """
    directory = epath.Path(storage.location(directory, "directory"))
    overwrite_rule.check_folder(directory, layout.EXPORTED_MODEL, force=overwrite)
    params = _host_float32(_params_of(variables))
    check_params_match(model, params, where="the parameters to save")
    tree = {"params": params}
    if _has_batch_stats(model):
        if "batch_stats" not in variables:
            raise UserError(f"{type(model).__name__} has batch norm: variables need its 'batch_stats'")
        tree["batch_stats"] = _host_float32(variables["batch_stats"])
    with atomic.folder(directory, overwrite=True) as tmp:
        import orbax.checkpoint as ocp

        ocp.PyTreeCheckpointer().save(tmp / layout.PARAMS_DIR, args=ocp.args.PyTreeSave(tree))
        # Last: only a finished folder has a model.json.
        layout.write_model_json(tmp, models.model_spec(model), dict(metadata or {}))
        layout.mark_folder(tmp, layout.EXPORTED_MODEL)


def _has_batch_stats(model: models.SRModel) -> bool:
    return "batch_stats" in models.abstract_variables(model)


def _params_of(variables: Any) -> Any:
    if not isinstance(variables, dict) or "params" not in variables:
        found = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
        raise UserError(f"expected variables as {{'params': ...}}, got {found}")
    return variables["params"]


def _host_float32(tree: Any) -> Any:
    """A copy of ``tree`` as nested dicts of float32 numpy arrays on the host."""
    tree = jax.tree_util.tree_map(lambda a: np.asarray(jax.device_get(a), np.float32), tree)
    return _plain_dicts(tree)


def _plain_dicts(tree: Any) -> Any:
    if hasattr(tree, "items"):
        return {str(k): _plain_dicts(v) for k, v in tree.items()}
    return tree


def load_model(
    path: str | os.PathLike, *, dtype: Any = None, which: str | int = "latest", weights: str = "auto"
) -> tuple[models.SRModel, dict]:
    """``(model, variables)`` of a model this package wrote: an exported model or a training workdir.

    For a workdir, ``which`` picks the checkpoint (``"latest"``, ``"best"`` by validation PSNR,
    ``"best_or_latest"`` or a step) and ``weights`` the EMA or raw weights (``"auto"``: the EMA if
    kept). ``dtype`` is the computation dtype; parameters stay float32.

    Raises:
      UserError: the path is not a model, or its parameters are unreadable or do not match it.
    """
    model, variables, _ = load_model_with_note(path, dtype=dtype, which=which, weights=weights)
    return model, variables


def load_model_with_note(
    path: str | os.PathLike, *, dtype: Any = None, which: str | int = "latest", weights: str = "auto"
) -> tuple[models.SRModel, dict, str]:
    """:func:`load_model`, and a note saying which checkpoint it read and why (``""``: an exported model)."""
    path = epath.Path(storage.location(path, "path"))
    if not path.exists():
        raise UserError(f"no model at {path}: the path does not exist")
    if path.is_file():
        if path.name != layout.MODEL_JSON:
            raise UserError(
                f"{path} is a file, not an edsr-jax model directory (a folder with {layout.MODEL_JSON} "
                f"and {layout.PARAMS_DIR}/); convert PyTorch .pt files with `edsr-jax convert-torch` first"
            )
        path = path.parent
    has_checkpoints = (path / layout.CHECKPOINTS_DIR).is_dir()
    if not (path / layout.MODEL_JSON).exists():
        contents = sorted(p.name for p in path.iterdir())
        if has_checkpoints:
            raise UserError(
                f"{path} looks like a training workdir ({layout.CHECKPOINTS_DIR}/ but no "
                f"{layout.MODEL_JSON}): not written by `edsr-jax train`?"
            )
        if not contents:
            raise UserError(f"no model at {path}: the directory is empty")
        raise UserError(
            f"no model at {path}: no {layout.MODEL_JSON} in it (found {listing(contents)}); "
            "expected a directory written by save_model or `edsr-jax convert-torch`"
        )
    spec, metadata = layout.read_model_json(path)
    where = str(path / layout.MODEL_JSON)
    model = layout.model_from_spec(spec, where, **({} if dtype is None else {"dtype": dtype}))
    is_workdir = metadata.get("source") == layout.TRAINING_SOURCE or (
        has_checkpoints and not (path / layout.PARAMS_DIR).is_dir()
    )
    if is_workdir:
        if not has_checkpoints:
            raise UserError(f"no complete checkpoint in {path / layout.CHECKPOINTS_DIR} yet")
        variables, note = _load_training_variables(path, model, which, weights)
        return model, variables, note
    return model, _load_exported_variables(path / layout.PARAMS_DIR, model), ""


def _load_training_variables(
    path: epath.Path, model: models.SRModel, which: str | int, weights: str
) -> tuple[dict, str]:
    """The variables of one complete checkpoint of a workdir, on the first local device, and which."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device),
        dict(models.abstract_variables(model)),
    )
    folder = path / layout.CHECKPOINTS_DIR
    variables, step, item = manager.restore_variables(folder, abstract, which, weights=weights)
    note = manager.describe_restored(folder, step, which)
    return variables, note + (", EMA weights" if item == manager.EMA_ITEM else "")


def _load_exported_variables(params_dir: epath.Path, model: models.SRModel) -> dict:
    """The variables of an exported model, checked against ``model`` before they are read."""
    if not params_dir.is_dir():
        raise UserError(
            f"the model at {params_dir.parent} has no {layout.PARAMS_DIR}/ directory (incomplete copy?)"
        )
    import orbax.checkpoint as ocp

    # Checked first: Orbax reports a missing file late and noisily.
    absent = [name for name in ORBAX_REQUIRED_FILES if not (params_dir / name).exists()]
    if absent:
        raise UserError(f"the parameters in {params_dir} are incomplete: {', '.join(absent)} missing")
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        item_metadata = checkpointer.metadata(params_dir).item_metadata
    except Exception as e:  # Orbax raises many types for unreadable folders
        raise UserError(f"cannot read the parameters in {params_dir}: {quote(e)}") from None
    if item_metadata is None:
        raise UserError(f"cannot read the parameters in {params_dir}: Orbax found no readable metadata")
    stored = item_metadata.tree
    if not isinstance(stored, dict) or "params" not in stored:
        raise UserError(f"the parameters in {params_dir} have no 'params' entry (not an edsr-jax model)")
    check_params_match(model, stored["params"], where=f"the parameters in {params_dir}")
    keep = ("params", "batch_stats") if _has_batch_stats(model) else ("params",)
    if "batch_stats" in keep and "batch_stats" not in stored:
        name = type(model).__name__
        raise UserError(f"the {name} in {params_dir} has no 'batch_stats' (its batch-norm averages)")
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), stored)
    try:
        restored = checkpointer.restore(params_dir, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    except Exception as e:
        raise UserError(f"cannot read the parameters in {params_dir}: {quote(e)}") from None
    return {k: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), restored[k]) for k in keep}


def check_params_match(model: models.SRModel, params: Any, *, where: str) -> None:
    """Raises UserError naming the first difference between ``params`` and ``model``'s parameters."""
    expected = models.param_shapes(model)
    found = {k: tuple(int(d) for d in v.shape) for k, v in models.flat_params(params).items()}
    spec = models.model_spec(model)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise UserError(f"{where} lack {listing(missing)} needed by the model {spec}")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise UserError(f"{where} have {listing(unexpected)} that the model {spec} does not have")
    for key in sorted(expected):
        if found[key] != expected[key]:
            raise UserError(
                f"{where}: {key} has shape {found[key]} but the model {spec} needs {expected[key]}"
            )
