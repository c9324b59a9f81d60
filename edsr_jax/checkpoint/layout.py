"""Names and the one ``model.json`` of everything on disk that holds parameters.

Two kinds of folders hold a model, and both have the same ``model.json``::

    exported model          DIR/model.json + DIR/params/ (an Orbax PyTree checkpoint, float32)
    training workdir        WORKDIR/model.json + WORKDIR/checkpoints/<step>/ (Orbax manager)

``model.json`` is ``{"format": "edsr-jax-model", "format_version": 1, "spec": {...},
"metadata": {...}}``: ``spec`` is :func:`edsr_jax.models.model_spec` output, so a model can be
rebuilt without knowing how it was made; a training workdir keeps the config its run started with
in ``metadata.config``. It is written (atomically) by :func:`write_model_json` and read by
:func:`read_model_json`, the only two places that touch it. Paths may be local or ``gs://`` URLs
(``etils.epath``; :func:`edsr_jax.storage.location` checks them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from etils import epath

from edsr_jax import atomic, models, storage
from edsr_jax.errors import UserError, quote

# The "format" field of model.json, and the newest format_version this code reads and writes.
MODEL_FORMAT = "edsr-jax-model"
FORMAT_VERSION = 1
# File and folder names of an exported model and of a training workdir.
MODEL_JSON = "model.json"
PARAMS_DIR = "params"
CHECKPOINTS_DIR = "checkpoints"


def checkpoint_dir(workdir: str | os.PathLike) -> str:
    """The folder of a training workdir that holds its step folders."""
    return str(epath.Path(storage.location(workdir, "workdir")) / CHECKPOINTS_DIR)


def write_model_json(folder: str | os.PathLike, spec: dict, metadata: dict) -> None:
    """Writes ``folder/model.json`` for the model ``spec`` atomically.

    Raises:
      UserError: ``metadata`` is not JSON-able.
    """
    document = {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION, "spec": spec, "metadata": metadata}
    try:
        text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise UserError(f"model metadata must be JSON-serialisable: {e}") from None
    atomic.write_text(epath.Path(folder) / MODEL_JSON, text)


def read_model_json(folder: str | os.PathLike) -> tuple[dict, dict]:
    """``(spec, metadata)`` of ``folder/model.json``.

    Raises:
      UserError: the file is missing, unreadable, not JSON, not an edsr-jax model file, or of a
        newer format version.
    """
    path = epath.Path(folder) / MODEL_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no {MODEL_JSON} in {folder}") from None
    except (OSError, ValueError) as e:  # (JSON and Unicode decoding errors are ValueErrors)
        raise UserError(f"{path} is corrupt or unreadable ({quote(e)}); move it away") from None
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise UserError(f"{path} is not an edsr-jax model file (format {found!r}, expected {MODEL_FORMAT!r})")
    version = document.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(
            f"{path} has format_version {version!r}; this edsr-jax reads up to {FORMAT_VERSION} (upgrade it)"
        )
    metadata = document.get("metadata")
    return document.get("spec"), metadata if isinstance(metadata, dict) else {}


def model_from_spec(spec: Any, where: str, **kwargs) -> models.SRModel:
    """:func:`edsr_jax.models.from_spec` with an error naming the file the spec came from.

    Raises:
      UserError: the spec does not describe an EDSR or MDSR.
    """
    try:
        return models.from_spec(spec, **kwargs)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{where} has an invalid model spec {spec!r}: {quote(e)}") from None


def prepare_workdir(
    workdir: str,
    spec: dict,
    config_summary: dict,
    *,
    write: bool = True,
    upgrade_stored: Callable[[dict], dict] | None = None,
) -> list[tuple[str, Any, Any]]:
    """Checks that ``workdir`` belongs to this model; writes ``workdir/model.json`` if missing.

    Args:
      workdir: the training directory.
      spec: ``models.model_spec`` of the model being trained.
      config_summary: flat, JSON-able config (``{"a.b": value}``) stored under ``metadata.config``.
      write: create the file (False on processes other than 0).
      upgrade_stored: applied to the stored config before comparing (renamed fields).

    Returns:
      ``[(key, stored value, new value)]`` for every config entry that differs from the stored
      one (a key missing on one side has ``None`` there); empty for a new workdir.

    Raises:
      UserError: the workdir holds a model.json of a different architecture, or is a file.
    """
    folder = epath.Path(workdir)
    if folder.is_file():
        raise UserError(f"workdir {workdir} is a file, not a directory")
    # Compare as JSON would store the new config (tuples become lists, objects strings).
    new = json.loads(json.dumps(config_summary, default=str))
    if (folder / MODEL_JSON).exists():
        stored, metadata = read_model_json(folder)
        if stored != spec:
            raise UserError(
                f"{workdir} holds a run of a different model ({stored}) than this config ({spec}); "
                "use another workdir"
            )
        old = metadata.get("config") or {}
        if upgrade_stored is not None:
            old = upgrade_stored(old)
        return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        write_model_json(folder, spec, {"source": "training", "config": new})
    return []
