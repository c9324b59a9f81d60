"""Writing files and folders so that a reader never sees half of them.

A temporary name beside the target, renamed over it (on ``gs://`` a copy and delete: never partial).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import IO, Any

from etils import epath

PathLike = str | os.PathLike


def _tmp_sibling(path: epath.Path, kind: str) -> epath.Path:
    """A hidden, unique name beside ``path`` (same folder, so the rename stays on one device)."""
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _is_local(path: epath.Path) -> bool:
    return "://" not in os.fspath(path)


@contextlib.contextmanager
def open_for_writing(path: PathLike) -> Iterator[IO[bytes]]:
    """A binary file that appears under ``path`` only when the block succeeds; the folder must exist.

    A local file gets the permissions a plain ``open()`` gives. An OSError names ``path``, not the
    temporary file.
    """
    path = epath.Path(path)
    tmp = _tmp_sibling(path, "tmp")
    try:
        if _is_local(path):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as f:
                yield f
        else:
            with tmp.open("wb") as f:
                yield f
        tmp.replace(path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise naming(e, path) from None
        raise


def write_bytes(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with open_for_writing(path) as f:
        f.write(data)


def naming(error: OSError, path: PathLike) -> OSError:
    """``error`` told about ``path`` (the name the user gave) instead of a temporary file."""
    if error.errno is None:
        renamed = OSError(f"cannot write {os.fspath(path)}: {error}")
        renamed.filename = os.fspath(path)
        return renamed
    return type(error)(error.errno, error.strerror or str(error), os.fspath(path))


def write_text(path: PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (strict JSON has no Infinity)."""
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(payload: Any) -> str:
    """Strict, sorted, indented JSON of ``payload`` (non-finite floats as ``null``, objects as ``str``)."""
    text = json.dumps(finite_or_null(payload), indent=2, sort_keys=True, allow_nan=False, default=str)
    return text + "\n"


def write_json(path: PathLike, payload: Any) -> None:
    """Writes ``payload`` as strict JSON (:func:`to_json`) to ``path`` atomically."""
    write_text(path, to_json(payload))


@contextlib.contextmanager
def folder(path: PathLike, *, overwrite: bool = False) -> Iterator[epath.Path]:
    """Builds a folder under a temporary name and renames it to ``path`` when the block succeeds.

    An existing ``path`` is replaced only with ``overwrite`` (else FileExistsError, before the block);
    if another writer creates ``path`` meanwhile, the first writer wins.
    """
    path = epath.Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists() and overwrite:
            old = _tmp_sibling(path, "old")
            path.rename(old)
        try:
            tmp.rename(path)
        except OSError:
            if not path.exists():
                raise
            _remove(tmp)  # another writer finished first: keep its folder
        if old is not None:
            _remove(old)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: epath.Path) -> None:
    if _is_local(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.rmtree()
