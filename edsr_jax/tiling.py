"""A network run on fixed-size overlapping tiles of an image, each tile's interior kept.

One program serves any image size in bounded memory; with an overlap of at least the receptive
radius the result is the untiled one (bit-identical on CPU; GPU/TPU may differ by a grey level).
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np

from edsr_jax.errors import UserError


def tile_starts(length: int, padded: int, tile: int, core: int, overlap: int) -> list[tuple[int, int, int]]:
    """(tile_start, core_start, core_end) along one axis; tiles stay inside [0, padded)."""
    out = []
    for core_start in range(0, length, core):
        core_end = min(core_start + core, length)
        start = min(max(core_start - overlap, 0), padded - tile)
        out.append((start, core_start, core_end))
    return out


def tiled(
    fn: Callable,
    x,
    *,
    scale: int,
    tile: int,
    overlap: int,
    with_valid: bool = False,
    with_core: bool = False,
    out: np.ndarray | None = None,
    finish: Callable[[np.ndarray], np.ndarray] | None = None,
    in_flight: int = 1,
) -> np.ndarray:
    """Runs ``fn`` on ``tile x tile`` LR tiles and stitches the interiors of the outputs.

    An image smaller than a tile is zero-padded with ``fn`` told the image part (``with_valid``), else
    edge-padded. ``with_core`` also passes the kept part, and ``fn`` returns that part only; ``out``
    is where to write, ``finish`` maps each kept part (e.g. quantisation), ``in_flight`` tiles are
    dispatched before the first is fetched. UserError if ``tile <= 2 * overlap``.
    """
    x = np.asarray(x)
    n, h, w, _ = x.shape
    tile, overlap = int(tile), int(overlap)
    core = tile - 2 * overlap
    if core < 1:
        raise UserError(f"tile size {tile} must be larger than twice the overlap {overlap}")
    hp, wp = max(h, tile), max(w, tile)
    if (hp, wp) != (h, w):
        mode = "constant" if with_valid else "edge"
        x = np.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)), mode=mode)
    pending = collections.deque()

    def store(y, ty, tx, cy0, cy1, cx0, cx1):
        nonlocal out
        y = np.asarray(y, np.float32)
        if out is None:
            out = np.empty((n, h * scale, w * scale, y.shape[-1]), np.float32)
        if with_core:
            ty, tx = cy0, cx0
        kept = y[:, (cy0 - ty) * scale : (cy1 - ty) * scale, (cx0 - tx) * scale : (cx1 - tx) * scale]
        out[:, cy0 * scale : cy1 * scale, cx0 * scale : cx1 * scale] = (
            kept if finish is None else finish(kept)
        )

    for ty, cy0, cy1 in tile_starts(h, hp, tile, core, overlap):
        for tx, cx0, cx1 in tile_starts(w, wp, tile, core, overlap):
            patch = np.asarray(x[:, ty : ty + tile, tx : tx + tile], np.float32)
            valid = np.array([0, min(tile, h - ty), 0, min(tile, w - tx)], np.int32)
            kept = np.array([cy0 - ty, cy1 - ty, cx0 - tx, cx1 - tx], np.int32)
            args = (patch, valid, kept) if with_core else (patch, valid) if with_valid else (patch,)
            pending.append((fn(*args), ty, tx, cy0, cy1, cx0, cx1))
            if len(pending) >= max(1, in_flight):
                store(*pending.popleft())
    while pending:
        store(*pending.popleft())
    return out
