"""The on-disk cache of decoded training images: flat ``.npy`` buffers that later runs memory-map.

Decoding a DIV2K pair takes ~80 ms, so every image is decoded once. With ``config.data.cache_dir``
the decoded pixels go into one folder per source description (a hash of everything that changes
the pixels: source, image ids, scales, degradation, data folder), written atomically
(:func:`edsr_jax.atomic.folder`), so a crash leaves no half-written cache and two processes
building the same cache keep the first one finished. Reading memory-maps the buffers: no copy,
and the pages are shared by every process on the host.

Layout of a cache folder: ``index.json`` (names and shapes) and one flat uint8 ``.npy`` per group
(``hr.npy``, ``lr_x2.npy``, ...) holding the images one after the other.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

from edsr_jax import atomic

# Bumped when the cache file layout or the decoding changes, so old cache files are not reused.
CACHE_VERSION = 1
INDEX_JSON = "index.json"


def cache_folder(cache_dir: str, description: dict) -> str:
    """The cache folder for a source description (a hash of everything that changes the pixels)."""
    text = json.dumps({"version": CACHE_VERSION, **description}, sort_keys=True, default=str)
    return os.path.join(cache_dir, "pairs-" + hashlib.sha256(text.encode()).hexdigest()[:16])


def exists(folder: str) -> bool:
    """Whether ``folder`` holds a finished cache."""
    return os.path.isfile(os.path.join(folder, INDEX_JSON))


def _groups(pairs) -> dict[str, tuple[np.ndarray, ...]]:
    return {"hr": tuple(pairs.hr)} | {f"lr_x{s}": tuple(v) for s, v in pairs.lr.items()}


def save_cache(pairs, folder: str) -> None:
    """Writes ``pairs`` (an ``ImagePairs``) into ``folder`` atomically; a finished one is kept."""
    if exists(folder):
        return
    groups = _groups(pairs)
    index = {"names": list(pairs.names)} | {k: [list(a.shape) for a in v] for k, v in groups.items()}
    try:
        with atomic.folder(folder) as tmp:
            for key, arrays in groups.items():
                flat = np.lib.format.open_memmap(
                    os.path.join(tmp, f"{key}.npy"),
                    mode="w+",
                    dtype=np.uint8,
                    shape=(sum(a.size for a in arrays),),
                )
                offset = 0
                for a in arrays:
                    flat[offset : offset + a.size] = a.reshape(-1)
                    offset += a.size
                flat.flush()
                del flat
            atomic.write_json(os.path.join(tmp, INDEX_JSON), index)
    except FileExistsError:  # another process finished it first
        pass


def load_cache(
    folder: str, scales: Sequence[int]
) -> tuple[tuple[str, ...], tuple[np.ndarray, ...], dict[int, tuple[np.ndarray, ...]]]:
    """Memory-maps a cache written by :func:`save_cache`: ``(names, hr, {scale: lr})``, no copy."""
    with open(os.path.join(folder, INDEX_JSON)) as f:
        index = json.load(f)

    def views(key):
        flat = np.load(os.path.join(folder, f"{key}.npy"), mmap_mode="r")
        out, offset = [], 0
        for shape in index[key]:
            size = int(np.prod(shape))
            out.append(flat[offset : offset + size].reshape(shape))
            offset += size
        return tuple(out)

    return tuple(index["names"]), views("hr"), {s: views(f"lr_x{s}") for s in scales}
