"""The exported-model format shared by the whole project: ``model.json`` plus Orbax parameters.

An exported model is a directory::

    DIR/model.json   {"format": "edsr-jax-model", "format_version": 1, "spec": {...}, "metadata": {...}}
    DIR/params/      an Orbax PyTree checkpoint of {"params": ...}, float32

``spec`` is :func:`edsr_jax.models.model_spec` output, so :func:`load_model` can rebuild the model
without knowing how it was made (converted from PyTorch, or exported after training).
:func:`save_model` writes into a hidden temporary sibling directory and renames it into place, so a
crash never leaves a half-written directory under the requested name; a left-over temporary
directory has no ``model.json`` until its very last step and does not load.

:func:`load_model` dispatches on what the folder holds: an exported model (``model.json``) or, once
training exists, a training workdir (``checkpoints/``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from edsr_jax import models
from edsr_jax.errors import UserError

# The "format" field of model.json, and the newest format_version this code reads and writes.
MODEL_FORMAT = "edsr-jax-model"
FORMAT_VERSION = 1
# File and folder names inside an exported model directory.
MODEL_JSON = "model.json"
PARAMS_DIR = "params"
# Files an Orbax PyTree checkpoint (OCDBT layout, as save_model writes it) cannot be read without.
ORBAX_REQUIRED_FILES = ("_METADATA", "manifest.ocdbt")
# The folder a training workdir keeps its Orbax CheckpointManager checkpoints in.
TRAINING_CHECKPOINTS_DIR = "checkpoints"
# How many offending keys an error message lists before "and N more".
MAX_KEYS_IN_MESSAGE = 5
# Longest underlying-library message quoted inside one of our one-line errors.
MAX_QUOTED_CHARS = 300


# --- saving -------------------------------------------------------------------------------------


def save_model(
    directory: str | os.PathLike,
    model: models.SRModel,
    variables: Any,
    *,
    metadata: dict | None = None,
    overwrite: bool = False,
) -> None:
    """Writes ``model`` and its parameters to ``directory`` as an exported model (synchronously).

    The parameters are stored as float32 numpy arrays with Orbax under ``directory/params`` and the
    architecture as ``directory/model.json``. Everything is first written to a hidden temporary
    sibling directory that is renamed into place at the end. Call it from one process only.

    Args:
      directory: the model directory to create.
      model: an EDSR or MDSR (its dtypes are not stored; ``load_model`` takes ``dtype``).
      variables: ``{"params": ...}`` matching ``model`` (JAX or numpy arrays, any float dtype).
      metadata: JSON-able extra information stored in ``model.json`` (source, training run...).
      overwrite: replace ``directory`` if it exists and is not empty (the old contents are
        deleted once the new model is in place).

    Raises:
      UserError: ``directory`` is a file, or a non-empty directory and ``overwrite`` is false, or
        the parameters do not match ``model``, or ``metadata`` is not JSON-able.
    """
    directory = Path(directory).absolute()
    if directory.is_file():
        raise UserError(f"cannot save a model to {directory}: it is a file")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise UserError(f"cannot save a model to {directory}: the directory is not empty")
    params = _host_float32(_params_of(variables))
    check_params_match(model, params, where="the parameters to save")
    document = {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": models.model_spec(model),
        "metadata": dict(metadata or {}),
    }
    try:
        text = json.dumps(document, indent=2, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise UserError(f"model metadata must be JSON-serialisable: {e}") from None

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _write_params(tmp / PARAMS_DIR, params)
        _write_model_json(tmp / MODEL_JSON, text)  # last: only a finished directory has model.json
        _move_into_place(tmp, directory)
    except BaseException:
        _discard(tmp)
        raise


def _params_of(variables: Any) -> Any:
    if not isinstance(variables, dict) or "params" not in variables:
        found = sorted(variables) if isinstance(variables, dict) else type(variables).__name__
        raise UserError(f"expected variables as {{'params': ...}}, got {found}")
    return variables["params"]


def _host_float32(tree: Any) -> Any:
    """A copy of ``tree`` as plain nested dicts of float32 numpy arrays on the host."""
    tree = jax.tree_util.tree_map(lambda a: np.asarray(jax.device_get(a), np.float32), tree)
    return _plain_dicts(tree)


def _plain_dicts(tree: Any) -> Any:
    if hasattr(tree, "items"):
        return {str(k): _plain_dicts(v) for k, v in tree.items()}
    return tree


def _write_params(path: Path, params: Any) -> None:
    import orbax.checkpoint as ocp

    checkpointer = ocp.PyTreeCheckpointer()
    checkpointer.save(path, args=ocp.args.PyTreeSave({"params": params}))


def _write_model_json(path: Path, text: str) -> None:
    path.write_text(text + "\n", encoding="utf-8")


def _move_into_place(tmp: Path, directory: Path) -> None:
    """Renames ``tmp`` to ``directory``; an existing ``directory`` is moved aside, then deleted."""
    old = None
    if directory.exists():
        old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(directory, old)
    os.rename(tmp, directory)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _discard(path: Path) -> None:
    """Removes a temporary directory of a save that failed."""
    shutil.rmtree(path, ignore_errors=True)


# --- loading ------------------------------------------------------------------------------------


def load_model(
    path: str | os.PathLike, *, dtype: Any = None, which: str | int = "latest"
) -> tuple[models.SRModel, dict]:
    """Restores a model that this package wrote.

    Args:
      path: an exported model directory (``save_model``, ``edsr-jax convert-torch``) or its
        ``model.json``, or a training workdir (``edsr-jax train``).
      dtype: computation dtype of the returned model (e.g. ``jnp.bfloat16``); parameters stay
        float32.
      which: for a training workdir, the checkpoint: ``"latest"``, ``"best"`` (highest validation
        PSNR) or a step number. Only complete checkpoints are considered.

    Returns:
      ``(model, variables)`` with ``variables = {"params": ...}`` as JAX arrays on the default
      device.

    Raises:
      UserError: the path is missing or is not a model, ``model.json`` is corrupt, or the stored
        parameters are unreadable or do not match the stored architecture.
    """
    from edsr_jax import checkpointing

    # Absolute (Orbax misreads relative paths); etils' Path: local paths behave as pathlib's, and
    # gs:// (any URL etils knows) works too.
    path = epath.Path(checkpointing.absolute(path))
    if not path.exists():
        raise UserError(f"no model at {path}: the path does not exist")
    if path.is_file():
        if path.name != MODEL_JSON:
            raise UserError(
                f"{path} is a file, not an edsr-jax model directory (a folder with {MODEL_JSON} and "
                f"{PARAMS_DIR}/); convert PyTorch .pt files with `edsr-jax convert-torch` first"
            )
        path = path.parent
    if (path / TRAINING_CHECKPOINTS_DIR).is_dir() and not (path / PARAMS_DIR).is_dir():
        return _load_training(path, dtype, which)
    if (path / MODEL_JSON).exists():
        return _load_exported(path, dtype)
    contents = sorted(p.name for p in path.iterdir())
    if not contents:
        raise UserError(f"no model at {path}: the directory is empty")
    raise UserError(
        f"no model at {path}: no {MODEL_JSON} in it (found {_listing(contents)}); "
        "expected a directory written by save_model or `edsr-jax convert-torch`"
    )


def _load_training(path: epath.Path, dtype: Any, which: str | int) -> tuple[models.SRModel, dict]:
    """A training workdir: the architecture from its model.json, parameters from one checkpoint."""
    if not (path / MODEL_JSON).exists():
        raise UserError(
            f"{path} looks like a training workdir ({TRAINING_CHECKPOINTS_DIR}/ but no {MODEL_JSON}): "
            "not written by `edsr-jax train`?"
        )
    from edsr_jax import checkpointing

    model = _model_from_json(path / MODEL_JSON, dtype)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))["params"]
    abstract = jax.tree_util.tree_map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract
    )
    params, _ = checkpointing.restore_params(path / TRAINING_CHECKPOINTS_DIR, abstract, which)
    return model, {"params": params}


def _load_exported(path: epath.Path, dtype: Any) -> tuple[models.SRModel, dict]:
    """Loads an exported model directory (``model.json`` + ``params/``)."""
    model = _model_from_json(path / MODEL_JSON, dtype)
    params_dir = path / PARAMS_DIR
    if not params_dir.is_dir():
        raise UserError(f"the model at {path} has no {PARAMS_DIR}/ directory (incomplete copy?)")
    import orbax.checkpoint as ocp

    checkpointer = ocp.PyTreeCheckpointer()
    # Checked first: Orbax reports a missing file late, with asyncio noise on stderr.
    absent = [name for name in ORBAX_REQUIRED_FILES if not (params_dir / name).exists()]
    if absent:
        raise UserError(f"the parameters in {params_dir} are incomplete: {', '.join(absent)} missing")
    try:
        item_metadata = checkpointer.metadata(params_dir).item_metadata
    except Exception as e:  # Orbax raises many types for unreadable folders
        raise UserError(f"cannot read the parameters in {params_dir}: {_quote(e)}") from None
    if item_metadata is None:
        raise UserError(f"cannot read the parameters in {params_dir}: Orbax found no readable metadata")
    stored = item_metadata.tree
    if not isinstance(stored, dict) or "params" not in stored:
        raise UserError(f"the parameters in {params_dir} have no 'params' entry (not an edsr-jax model)")
    check_params_match(model, stored["params"], where=f"the parameters in {params_dir}")
    restore_args = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), stored)
    try:
        restored = checkpointer.restore(params_dir, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    except Exception as e:
        raise UserError(f"cannot read the parameters in {params_dir}: {_quote(e)}") from None
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), restored["params"])
    return model, {"params": params}


def _model_from_json(file: epath.Path, dtype: Any) -> models.SRModel:
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{file} is corrupt (not valid JSON: {e})") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise UserError(f"{file} is not an edsr-jax model file (format {found!r}, expected {MODEL_FORMAT!r})")
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(
            f"{file} has format_version {version!r}; this edsr-jax reads up to {FORMAT_VERSION} (upgrade it)"
        )
    spec = document.get("spec")
    try:
        return models.from_spec(spec, **({} if dtype is None else {"dtype": dtype}))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{file} has an invalid model spec {spec!r}: {_quote(e)}") from None


# --- parameter structure checks (shared with the converter) --------------------------------------


def expected_param_shapes(model: models.SRModel) -> dict[str, tuple[int, ...]]:
    """``{"block_0/conv1/kernel": shape, ...}`` for ``model``, computed without running it."""
    return dict(_param_shapes_of_spec(json.dumps(models.model_spec(model), sort_keys=True)))


@functools.lru_cache(maxsize=32)
def _param_shapes_of_spec(spec_json: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Cached by spec: tracing a deep model (MDSR B80: three branches) takes seconds."""
    model = models.from_spec(json.loads(spec_json))
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))
    return tuple(flatten_shapes(shapes["params"]).items())


def flatten_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """Shapes of a nested-dict parameter tree, keyed by ``/``-joined paths."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = "/".join(str(getattr(p, "key", p)) for p in path)
        flat[key] = tuple(int(d) for d in leaf.shape)
    return flat


def check_params_match(model: models.SRModel, params: Any, *, where: str) -> None:
    """Raises UserError naming the first differences between ``params`` and ``model``'s parameters.

    Args:
      model: the architecture the parameters must fit.
      params: a nested dict whose leaves have ``.shape`` (arrays or Orbax metadata).
      where: what ``params`` are, for the message (e.g. "the parameters in DIR/params").

    Raises:
      UserError: keys missing or unexpected, or a shape differs.
    """
    expected = expected_param_shapes(model)
    found = flatten_shapes(params)
    spec = models.model_spec(model)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise UserError(f"{where} lack {_listing(missing)} needed by the model {spec}")
    unexpected = sorted(set(found) - set(expected))
    if unexpected:
        raise UserError(f"{where} have {_listing(unexpected)} that the model {spec} does not have")
    for key in sorted(expected):
        if found[key] != expected[key]:
            raise UserError(
                f"{where}: {key} has shape {found[key]} but the model {spec} needs {expected[key]}"
            )


def _listing(names: list[str]) -> str:
    """``a, b, c`` for up to MAX_KEYS_IN_MESSAGE names, then ``and N more``."""
    shown = ", ".join(names[:MAX_KEYS_IN_MESSAGE])
    rest = len(names) - MAX_KEYS_IN_MESSAGE
    return shown + (f" and {rest} more" if rest > 0 else "")


def _quote(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if len(text) > MAX_QUOTED_CHARS:
        text = text[:MAX_QUOTED_CHARS] + "..."
    return f"{type(e).__name__}: {text}"
