"""A reader of ``torch.save`` files (zip and legacy formats) that needs no PyTorch and runs no code.

Each pickle is checked opcode by opcode, and only the names a state dict needs are resolved.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
import re
import zipfile
from typing import Any

import numpy as np

from edsr_jax.errors import UserError

# The legacy format's first pickle, and its protocol version (torch.serialization).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
ZIP_MAGIC = b"PK\x03\x04"
# Storage types of the pickle -> numpy dtype names (bfloat16 comes from ml_dtypes).
STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
# Opcodes that build plain data, plus the globals, REDUCE, BUILD and BINPERSID a state dict needs.
SAFE_OPCODES = frozenset(
    "PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 "
    "LONG4 FLOAT BINFLOAT STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8 "
    "BINBYTES SHORT_BINBYTES BINBYTES8 EMPTY_DICT DICT SETITEM SETITEMS EMPTY_LIST LIST APPEND APPENDS "
    "EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET "
    "GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID".split()
)
# Bytes read from the start of a file to say what it is when it is not a PyTorch file.
SNIFF_BYTES = 1024
# How a Git LFS pointer file begins (git-lfs spec v1).
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


class _Bad(Exception):
    """A problem with the file, worded to follow the path in a message."""


class _StorageType:
    __slots__ = ("dtype", "name")

    def __init__(self, name: str):
        self.name, self.dtype = name, STORAGE_DTYPES[name]

    def __setstate__(self, state):
        raise _Bad("sets attributes on a storage type")


class _Storage:
    __slots__ = ("array", "dtype", "key", "numel")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel, self.array = key, dtype, numel, None

    def __setstate__(self, state):
        raise _Bad("sets attributes on a storage")


class _TensorRef:
    """A tensor waiting for its storage's bytes (the legacy format stores them after the pickle)."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, _Storage):
            raise _Bad(f"has a tensor without a storage (found {type(storage).__name__})")
        ints = lambda v: isinstance(v, tuple) and all(type(i) is int and i >= 0 for i in v)
        valid = type(offset) is int and offset >= 0 and ints(size) and ints(stride)
        if not valid or len(size) != len(stride):
            raise _Bad(
                f"has a tensor with an invalid layout (offset {offset!r}, size {size!r}, stride {stride!r})"
            )
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):
        raise _Bad("sets attributes on a tensor")

    def to_numpy(self) -> np.ndarray:
        storage = self.storage
        if 0 in self.size:
            return np.zeros(self.size, storage.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        if last >= storage.numel:
            raise _Bad(f"has a tensor reaching element {last} of storage {storage.key} of {storage.numel}")
        itemsize = storage.array.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage.array[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, hooks=None, *_):
    if hooks:
        raise _Bad("has a tensor with backward hooks (code from the file)")
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *_):
    if not isinstance(data, _TensorRef) or hooks:
        raise _Bad("has a parameter that is not a plain tensor")
    return data


_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _Unpickler(pickle.Unpickler):
    """Resolves only :data:`_GLOBALS`; storages come from ``load_storage(pid)``."""

    def __init__(self, data: bytes, load_storage=None):
        super().__init__(io.BytesIO(data))
        self._load_storage = load_storage

    def find_class(self, module: str, name: str):
        found = _GLOBALS.get((module, name))
        if found is None:
            raise _Bad(_refusal(f"{module}.{name}"))
        return found

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise _Bad("refers to a storage where none may be")
        return self._load_storage(pid)


def _refusal(what: str) -> str:
    return (
        f"was refused: its pickle asks for {what}, which a state dict of tensors never needs (a whole "
        "pickled object, or code that torch.load(weights_only=False) would run); save a state_dict()"
    )


def _scan(stream: io.BytesIO) -> tuple[int, int]:
    """Checks the opcodes of the pickle at the stream's position; returns its ``(start, end)``."""
    start = stream.tell()
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            if opcode.name not in SAFE_OPCODES:
                raise _Bad(_refusal(f"the pickle opcode {opcode.name}"))
            if opcode.name == "GLOBAL" and tuple(str(arg).split(" ", 1)) not in _GLOBALS:
                raise _Bad(_refusal(str(arg).replace(" ", ".")))
    except ValueError as e:  # an unknown opcode, or the data ends before STOP
        if "unknown" in str(e):
            raise _Bad(f"is not a readable pickle at byte {start} ({e})") from None
        raise _Bad(
            f"is truncated: its pickle at byte {start} ends early ({e}); an interrupted download?"
        ) from None
    return start, stream.tell()


def _load(stream: io.BytesIO, data: bytes, load_storage=None) -> Any:
    start, end = _scan(stream)
    try:
        return _Unpickler(data[start:end], load_storage).load()
    except _Bad:
        raise
    except Exception as e:  # a call with the wrong arguments, a bad memo index, ...
        raise _Bad(f"has a malformed pickle ({type(e).__name__}: {e})") from None


def _dtype(storage_type) -> np.dtype:
    if not isinstance(storage_type, _StorageType):
        raise _Bad(f"names a storage of type {type(storage_type).__name__}")
    if storage_type.dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(storage_type.dtype)


def _storage_pid(pid, fields: int) -> tuple:
    if not (isinstance(pid, tuple) and len(pid) == fields and pid[0] == "storage"):
        raise _Bad(f"has an unknown persistent id {str(pid)[:80]!r}")
    key, numel = pid[2], pid[4]
    if not isinstance(key, str) or type(numel) is not int or numel < 0:
        raise _Bad(f"has a storage with key {key!r} and size {numel!r}")
    return pid


def _read_zip(path: str) -> Any:
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_archive(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise _Bad(
            f"is truncated or damaged: it starts as a zip-format PyTorch file but cannot be opened "
            f"({os.path.getsize(path):,} bytes; {e}); an interrupted download or copy?"
        ) from None


def _read_archive(archive: zipfile.ZipFile) -> Any:
    names = archive.namelist()
    pickles = [n for n in names if re.fullmatch(r"[^/]+/data\.pkl", n)]
    if len(pickles) != 1:
        raise _Bad(f"is a zip archive but not a PyTorch file (no <dir>/data.pkl among {len(names)} entries)")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = archive.read(f"{prefix}byteorder").decode() if f"{prefix}byteorder" in names else "little"
    if byteorder not in ("little", "big"):
        raise _Bad(f"has an unknown byte order {byteorder!r}")
    storages: dict[str, _Storage] = {}

    def load_storage(pid):
        _, storage_type, key, _, numel = _storage_pid(pid, 5)
        if key not in storages:
            dtype = _dtype(storage_type)
            try:
                raw = archive.read(f"{prefix}data/{key}")
            except (KeyError, zipfile.BadZipFile, OSError) as e:
                raise _Bad(f"lacks or cannot read the record of storage {key} ({e})") from None
            if len(raw) < numel * dtype.itemsize:
                raise _Bad(f"has {len(raw)} bytes for storage {key}, which needs {numel * dtype.itemsize}")
            storage = storages[key] = _Storage(key, dtype, numel)
            stored = dtype.newbyteorder("<" if byteorder == "little" else ">")
            storage.array = np.frombuffer(raw, stored, count=numel).astype(dtype, copy=False)
        return storages[key]

    pickled = archive.read(pickles[0])
    return _load(io.BytesIO(pickled), pickled, load_storage)


def _read_legacy(data: bytes) -> Any:
    stream = io.BytesIO(data)
    if _load(stream, data) != LEGACY_MAGIC:
        raise _Bad("is a pickle but not a PyTorch file (no torch.save magic number)")
    protocol = _load(stream, data)
    if protocol != LEGACY_PROTOCOL:
        raise _Bad(f"has the legacy format's protocol {protocol!r}; this reader knows {LEGACY_PROTOCOL}")
    info = _load(stream, data)
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise _Bad("was written on a big-endian machine (legacy format): not supported")
    storages: dict[str, _Storage] = {}

    def load_storage(pid):
        _, storage_type, key, _, numel, view = _storage_pid(pid, 6)
        if view is not None:
            raise _Bad("has storage views (an early legacy file): not supported")
        if key not in storages:
            storages[key] = _Storage(key, _dtype(storage_type), numel)
        return storages[key]

    obj = _load(stream, data, load_storage)
    keys = _load(stream, data)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Bad("has no list of storage keys after its object")
    for key in keys:
        storage = storages.get(key)
        if storage is None:
            raise _Bad(f"lists storage {key}, which no tensor uses")
        count = int.from_bytes(stream.read(8), "little") if len(data) - stream.tell() >= 8 else None
        nbytes = storage.numel * storage.dtype.itemsize
        if count is None or len(data) - stream.tell() < nbytes:
            raise _Bad(
                f"is truncated: storage {key} needs {nbytes:,} bytes at byte {stream.tell():,} but the file "
                f"ends at {len(data):,}; an interrupted download or copy?"
            )
        if count != storage.numel:
            raise _Bad(f"says storage {key} holds {count} elements, its tensors {storage.numel}")
        start = stream.tell()
        storage.array = np.frombuffer(data, storage.dtype, count=storage.numel, offset=start)
        stream.seek(start + nbytes)
    missing = sorted(set(storages) - set(keys))
    if missing:
        raise _Bad(f"has no bytes for storages {', '.join(missing[:5])}")
    return obj


_PLAIN = (str, bytes, int, float, bool, complex)


def _materialize(obj: Any) -> Any:
    """The unpickled object with arrays in place of tensors; anything but plain data is refused."""
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, dict):
        if not all(k is None or type(k) in _PLAIN for k in obj):
            raise _Bad("has a dict whose keys are not plain values")
        items = [(k, _materialize(v)) for k, v in obj.items()]
        return collections.OrderedDict(items) if isinstance(obj, collections.OrderedDict) else dict(items)
    if isinstance(obj, list | tuple):
        return type(obj)(_materialize(v) for v in obj)
    if obj is None or type(obj) in _PLAIN:
        return obj
    raise _Bad(f"holds a {type(obj).__name__} where tensors and plain values are expected")


def describe_other_file(head: bytes, size: int) -> str | None:
    """What a file that is not a PyTorch file is (empty, LFS pointer, HTML, text), or None."""
    if size == 0:
        return "is empty (0 bytes): an interrupted download or copy?"
    if head.startswith(LFS_POINTER_PREFIX):
        text = head.decode("utf-8", "replace")
        oid = re.search(r"oid sha256:([0-9a-f]{64})", text)
        real = re.search(r"\nsize (\d+)", text)
        target = f" to a {int(real.group(1)):,}-byte file" if real else ""
        digest = f" (sha256 {oid.group(1)[:16]}...)" if oid else ""
        return (
            f"is a Git LFS pointer ({size} bytes){target}{digest}, not the weights: fetch the file itself "
            "(git lfs pull in its repository, or the download link of the file)"
        )
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or b"<html" in text[:256]:
        title = re.search(rb"<title[^>]*>([^<]{0,80})", head, re.IGNORECASE)
        named = f", title {title.group(1).decode('utf-8', 'replace').strip()!r}" if title else ""
        return (
            f"is an HTML page ({size:,} bytes{named}), not PyTorch weights: the download returned a web "
            "page (an error, login or quota page) instead of the file"
        )
    if all(32 <= c < 127 or c in b"\t\r\n" for c in head[:256]):
        start = head[:40].decode("ascii").strip()
        return f"is a text file ({size:,} bytes, starting {start!r}), not PyTorch weights"
    return None


def read(path: str | os.PathLike) -> Any:
    """The object a ``torch.save`` file holds, with numpy arrays (copies) in place of its tensors.

    Raises:
      UserError: the file is missing, not a PyTorch file (saying what it is instead), truncated, or
        holds anything but tensors and plain values.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise UserError(f"cannot read PyTorch weights from {path}: it {what}")
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    try:
        if head.startswith(ZIP_MAGIC):
            obj = _read_zip(path)
        elif head[:1] == b"\x80":  # a pickle (protocol 2 and up): the legacy format
            with open(path, "rb") as f:
                obj = _read_legacy(f.read())
        else:
            other = describe_other_file(head, os.path.getsize(path))
            raise _Bad(other or f"is not a PyTorch file (it starts with {head[:8]!r})")
        return _materialize(obj)
    except _Bad as e:
        raise UserError(f"{path} {e}") from None
    except RecursionError:
        raise UserError(f"{path} has a pickle nested too deeply to be a state dict") from None
