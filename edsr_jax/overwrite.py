"""The one rule for what a command may replace: nothing without ``force``, and with it only what
edsr-jax wrote, never an input, a model folder's part or a training workdir.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence

from etils import epath

from edsr_jax import storage
from edsr_jax.checkpoint import layout
from edsr_jax.errors import UserError, listing

PathLike = str | os.PathLike
# Files and folders of a training workdir that no command may write over.
WORKDIR_PARTS = (layout.MODEL_JSON, layout.CHECKPOINTS_DIR, layout.PARAMS_DIR, layout.OWNER_FILE)


def _absolute(path: PathLike) -> epath.Path:
    return epath.Path(storage.location(path, "path"))


def check_writable(path: PathLike) -> None:
    """Refuses ``path`` when the nearest existing folder above it cannot be written (local paths).

    Tried with an unnamed temporary file, so a read-only file system is found too.
    """
    if storage.is_url(path):
        return
    parent = os.path.dirname(os.path.abspath(os.fspath(path)))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UserError(f"cannot write {path}: {parent} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        raise UserError(
            f"cannot write {path}: the folder {parent} is not writable ({e.strerror or e})"
        ) from None


def owner_of(path: PathLike) -> str | None:
    """What edsr-jax folder ``path`` is part of (one line for a message), or None."""
    path = _absolute(path)
    for folder in path.parents:
        kind = layout.folder_kind(folder)
        if kind is None:
            continue
        first = path.relative_to(folder).parts[0]
        if kind != layout.TRAINING_WORKDIR or first in WORKDIR_PARTS:
            return f"part of {layout.KIND_NAMES.get(kind, kind)} at {folder}"
    return None


def _is_inside(path: epath.Path, folder: epath.Path) -> bool:
    return path == folder or folder in path.parents


def check_file(path: PathLike, *, force: bool = False, inputs: Iterable[PathLike] = ()) -> None:
    """Refuses to write the file ``path`` unless this module's rule allows it.

    ``inputs`` are what the command reads; an existing ``path`` inside one is refused even with ``force``.
    """
    target = _absolute(path)
    if target.is_dir():
        raise UserError(f"{path} is a folder; give a file name to write")
    owner = owner_of(target)
    if owner:
        raise UserError(f"refusing to write {path}: it is {owner}")
    if target.exists():
        for source in inputs:
            if _is_inside(target, _absolute(source)):
                raise UserError(f"refusing to overwrite {path}: it is an input of this command ({source})")
        if not force:
            raise UserError(f"{path} exists; pass --force to replace it")
        return
    check_writable(path)


def check_files(paths: Sequence[PathLike], *, force: bool = False, inputs: Iterable[PathLike] = ()) -> None:
    """:func:`check_file` for many outputs, naming all the existing ones in one message."""
    inputs = list(inputs)
    existing = [p for p in paths if _absolute(p).is_file()]
    if len(paths) > 1 and existing and not force:
        names = listing([os.path.basename(os.fspath(p)) for p in existing])
        where = os.path.dirname(os.fspath(existing[0])) or "."
        raise UserError(
            f"{len(existing)} of the {len(paths)} output files exist in {where} ({names}); "
            "pass --force to replace them"
        )
    for p in paths:
        check_file(p, force=force, inputs=inputs)


def check_folder(path: PathLike, kind: str, *, force: bool = False) -> None:
    """Refuses to write the folder ``path`` to hold a layout ``kind`` unless this module's rule allows it."""
    target = _absolute(path)
    what = layout.KIND_NAMES.get(kind, kind)
    if target.is_file():
        raise UserError(f"{path} is a file; {what} is a folder: give a folder name")
    owner = owner_of(target) if target.parent != target else None
    if owner:
        raise UserError(f"refusing to write {path}: it is {owner}")
    if not target.exists():
        check_writable(path)
        return
    entries = sorted(p.name for p in target.iterdir())
    if not entries:
        return
    found = layout.folder_kind(target)
    if found is None:
        raise UserError(
            f"refusing to replace {path}: it holds files edsr-jax did not write ({listing(entries)}); "
            "choose another folder"
        )
    if found != kind:
        raise UserError(
            f"refusing to replace {path}: it holds {layout.KIND_NAMES.get(found, found)}, not {what}; "
            "choose another folder"
        )
    others = layout.foreign_files(target)
    if others:
        raise UserError(
            f"refusing to replace {path}: besides {what} it holds files edsr-jax did not write "
            f"({listing(others)}); move them out or choose another folder"
        )
    if not force:
        raise UserError(f"{path} holds {what} already; pass --force to replace it")
