"""Names and the one ``model.json`` of every folder that holds parameters.

Folders edsr-jax writes whole carry :data:`OWNER_FILE`, listing their files, so that
:mod:`edsr_jax.overwrite` can tell a user's files apart.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from etils import epath

from edsr_jax import atomic, models, storage
from edsr_jax.errors import UserError, listing, quote

# The "format" field of model.json, and the newest format_version this code reads and writes.
MODEL_FORMAT = "edsr-jax-model"
FORMAT_VERSION = 1
# File and folder names of an exported model and of a training workdir.
MODEL_JSON = "model.json"
PARAMS_DIR = "params"
CHECKPOINTS_DIR = "checkpoints"
# The marker file of folders edsr-jax writes whole.
OWNER_FILE = ".edsr-jax.json"
OWNER = "edsr-jax"
# Kinds of folders edsr-jax writes (and how messages name them).
EXPORTED_MODEL, TRAINING_WORKDIR, SAVEDMODEL = "exported-model", "training-workdir", "savedmodel"
KIND_NAMES = {
    EXPORTED_MODEL: f"an exported edsr-jax model ({MODEL_JSON} and {PARAMS_DIR}/)",
    TRAINING_WORKDIR: f"an edsr-jax training workdir ({MODEL_JSON} and {CHECKPOINTS_DIR}/)",
    SAVEDMODEL: "a SavedModel written by edsr-jax export",
}
# The metadata.source of a training workdir's model.json.
TRAINING_SOURCE = "training"


def checkpoint_dir(workdir: str | os.PathLike) -> str:
    """The folder of a training workdir that holds its step folders."""
    return str(epath.Path(storage.location(workdir, "workdir")) / CHECKPOINTS_DIR)


def write_model_json(folder: str | os.PathLike, spec: dict, metadata: dict) -> None:
    """Writes ``folder/model.json`` atomically; raises UserError if ``metadata`` is not JSON-able."""
    document = {"format": MODEL_FORMAT, "format_version": FORMAT_VERSION, "spec": spec, "metadata": metadata}
    try:
        text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as e:
        raise UserError(f"model metadata must be JSON-serialisable: {e}") from None
    atomic.write_text(epath.Path(folder) / MODEL_JSON, text)


def read_model_json(folder: str | os.PathLike) -> tuple[dict, dict]:
    """``(spec, metadata)`` of ``folder/model.json``; UserError if missing, corrupt or of a newer format."""
    path = epath.Path(folder) / MODEL_JSON
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no {MODEL_JSON} in {folder}") from None
    except (OSError, ValueError) as e:
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
    """:func:`edsr_jax.models.from_spec`, with a UserError naming the file the spec came from."""
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
    """Checks that ``workdir`` belongs to this model (writing its ``model.json`` if missing, when ``write``).

    Returns ``[(key, stored, new)]`` for every config entry that changed. UserError for another model.
    """
    folder = not_a_file(workdir)
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
        write_model_json(folder, spec, {"source": TRAINING_SOURCE, "config": new})
    return []


def _files_under(folder: epath.Path, prefix: str = "") -> list[str]:
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        name = f"{prefix}{entry.name}"
        out += _files_under(entry, name + "/") if entry.is_dir() else [name]
    return out


def mark_folder(folder: str | os.PathLike, kind: str) -> None:
    """Writes ``folder/OWNER_FILE`` listing every file under ``folder``; call it on the finished folder."""
    folder = epath.Path(folder)
    files = [f for f in _files_under(folder) if f != OWNER_FILE]
    atomic.write_json(folder / OWNER_FILE, {"written_by": OWNER, "kind": kind, "files": files})


def _owner_record(folder: epath.Path) -> dict | None:
    try:
        record = json.loads((folder / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("written_by") == OWNER else None


def folder_kind(folder: str | os.PathLike) -> str | None:
    """Which edsr-jax folder ``folder`` is, from its marker or its ``model.json``; None otherwise."""
    folder = epath.Path(folder)
    if not folder.is_dir():
        return None
    record = _owner_record(folder)
    if record is not None:
        return record.get("kind")
    if not (folder / MODEL_JSON).is_file():
        return None
    try:
        _, metadata = read_model_json(folder)
    except UserError:
        return None
    has_checkpoints = (folder / CHECKPOINTS_DIR).is_dir()
    if metadata.get("source") == TRAINING_SOURCE or (has_checkpoints and not (folder / PARAMS_DIR).is_dir()):
        return TRAINING_WORKDIR
    return EXPORTED_MODEL if (folder / PARAMS_DIR).is_dir() else None


def foreign_files(folder: str | os.PathLike) -> list[str]:
    """Paths under an exported model or SavedModel ``folder`` that edsr-jax did not write."""
    folder = epath.Path(folder)
    record = _owner_record(folder)
    if record is None:
        return sorted(p.name for p in folder.iterdir() if p.name not in (MODEL_JSON, PARAMS_DIR))
    written = set(record.get("files") or ()) | {OWNER_FILE}
    return [f for f in _files_under(folder) if f not in written]


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def not_a_file(workdir: str | os.PathLike) -> epath.Path:
    """``workdir`` as a path; raises a UserError when it is a file (the one such check)."""
    folder = epath.Path(workdir)
    if folder.is_file():
        raise UserError(f"workdir {workdir} is a file, not a directory")
    return folder


def check_training_folder(workdir: str, *, allow_other_files: bool = False) -> None:
    """Refuses a ``workdir`` that holds an exported model or (unless ``allow_other_files``) other files."""
    folder = not_a_file(workdir)
    if not folder.is_dir():
        return
    kind = folder_kind(folder)
    if kind == EXPORTED_MODEL:
        raise UserError(
            f"workdir {workdir} holds {KIND_NAMES[kind]}, not a training run; train into another folder "
            f"(config.init_from={workdir} starts from this model)"
        )
    if kind is not None and kind != TRAINING_WORKDIR:
        raise UserError(f"workdir {workdir} holds {KIND_NAMES.get(kind, kind)}; train into another folder")
    if kind == TRAINING_WORKDIR or (folder / MODEL_JSON).exists() or allow_other_files:
        return
    others = sorted(p.name for p in folder.iterdir() if not _is_hidden(p.name))
    if others:
        raise UserError(
            f"workdir {workdir} is not empty and holds no training run ({listing(others)}); train into "
            "an empty or new folder, or allow the other files (train --allow-other-files)"
        )


def _has_checkpoint_step(folder: epath.Path) -> bool:
    steps = folder / CHECKPOINTS_DIR
    return steps.is_dir() and any(p.name.isdigit() for p in steps.iterdir())


@contextlib.contextmanager
def removed_if_it_fails_early(workdir: str, *, is_chief: bool = True):
    """Removes what a run added to ``workdir`` if it fails before its first checkpoint.

    A run with a checkpoint is resumable and is left alone.
    """
    folder = epath.Path(workdir)
    before = {p.name for p in folder.iterdir()} if folder.is_dir() else None
    try:
        yield
    except Exception:
        if is_chief and folder.is_dir() and not _has_checkpoint_step(folder):
            for entry in folder.iterdir():
                if before is None or entry.name not in before:
                    with contextlib.suppress(OSError):
                        entry.rmtree() if entry.is_dir() else entry.unlink()
            if before is None and not any(folder.iterdir()):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
