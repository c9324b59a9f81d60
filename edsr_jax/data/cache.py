"""Training images decoded once, on first use, and kept: in memory or as memory-mapped ``.npy`` files.

Decoding is far slower than a step needs, so :class:`PairCache` keeps each image. With
``config.data.cache_dir`` each array is one ``.npy`` under ``pairs-<hash>/`` (the hash covers
everything that changes the pixels), written atomically and shared by every process on the host.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading

import numpy as np

from edsr_jax import atomic
from edsr_jax.data import benchmarks, sources
from edsr_jax.imaging import resize

# Bumped when the cache file layout or the decoding changes, so old cache files are not reused.
CACHE_VERSION = 2


def cache_folder(cache_dir: str, description: dict) -> str:
    """The cache folder for a source description (a hash of everything that changes the pixels)."""
    text = json.dumps({"version": CACHE_VERSION, **description}, sort_keys=True, default=str)
    return os.path.join(cache_dir, "pairs-" + hashlib.sha256(text.encode()).hexdigest()[:16])


def _save_npy(path: str, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    atomic.write_bytes(path, buffer.getvalue())


_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER = re.compile(
    r"'descr':\s*'([^']+)'.*'fortran_order':\s*(True|False).*'shape':\s*\(([\d,\s]*)\)", re.S
)


def _open_npy(path: str) -> np.ndarray:
    """``np.load(path, mmap_mode="r")`` for :func:`_save_npy`'s files, without ``ast``.

    NumPy's ``ast.literal_eval`` of the header fails under concurrent threads on CPython 3.11.
    """
    with open(path, "rb") as f:
        start = f.read(12)
        if start[:6] != _NPY_MAGIC:
            raise ValueError(f"{path} is not a .npy file")
        size_bytes = 2 if start[6] == 1 else 4
        length = int.from_bytes(start[8 : 8 + size_bytes], "little")
        offset = 8 + size_bytes + length
        f.seek(8 + size_bytes)
        match = _NPY_HEADER.search(f.read(length).decode("latin1"))
    if match is None:
        raise ValueError(f"{path} has a .npy header this cache does not write")
    shape = tuple(int(v) for v in match[3].replace(",", " ").split())
    order = "F" if match[2] == "True" else "C"
    return np.memmap(path, dtype=np.dtype(match[1]), mode="r", offset=offset, shape=shape, order=order)


class PairCache:
    """``cache.pair(i, scale) -> (hr, lr)``, read-only arrays, thread-safe (one thread decodes each image)."""

    def __init__(self, source: sources.PairSource, cache_dir: str = ""):
        self.__setstate__(
            {"source": source, "folder": cache_folder(cache_dir, source.description) if cache_dir else None}
        )

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self) -> dict:
        # Sent to Grain worker processes: the source and the disk folder, not the arrays (a worker
        # maps the files itself) nor the locks.
        return {"source": self.source, "folder": self.folder}

    def __setstate__(self, state: dict) -> None:
        self.source, self.folder = state["source"], state["folder"]
        self._arrays, self._pending, self._lock = {}, {}, threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded images this process holds (in memory or mapped)."""
        with self._lock:
            return sum(a.nbytes for a in self._arrays.values())

    def pair(self, i: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``i``'s HR and its LR at ``scale`` (the HR may exceed LR size x scale).

        Raises:
            UserError: an unreadable file, or an LR image larger than its HR image / scale.
        """
        hr = self._get(("hr", i), lambda: self.source.read_hr(i))
        lr = self._get((f"lr_x{scale}", i), lambda: self._read_lr(i, scale, hr))
        return hr, lr

    def _read_lr(self, i: int, scale: int, hr: np.ndarray) -> np.ndarray:
        name = self.source.names[i]
        lr = self.source.read_lr(i, scale)
        lr = resize.downscale(hr, scale, name=f"image {name}") if lr is None else lr
        benchmarks.check_pair(name, hr, lr, scale, self.source.lr_file(i, scale))
        return lr

    def _get(self, key: tuple, decode) -> np.ndarray:
        while True:
            with self._lock:
                if key in self._arrays:
                    return self._arrays[key]
                event = self._pending.get(key)
                if event is None:
                    event = self._pending[key] = threading.Event()
                    owner = True
                else:
                    owner = False
            if not owner:
                event.wait()
                continue  # (if the owner failed, try again: the error is raised where it happened)
            try:
                array = self._load(key, decode)
                with self._lock:
                    self._arrays[key] = array
                return array
            finally:
                with self._lock:
                    del self._pending[key]
                event.set()

    def _load(self, key: tuple, decode) -> np.ndarray:
        if self.folder is None:
            array = decode()
            array.setflags(write=False)
            return array
        path = os.path.join(self.folder, key[0], f"{key[1]}.npy")
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _save_npy(path, decode())
        return _open_npy(path)
