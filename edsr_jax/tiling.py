"""Tiles: a network run on fixed-size overlapping tiles of an image, each tile's interior kept.

Every tile has the same shape (one compiled program for any image size) and holds its own
activations only (bounded memory). Each output pixel comes from a tile where it lies at least
``overlap`` LR pixels from every cut edge; with an overlap of at least the network's receptive
radius the stitched output is the untiled one.

How exact: every output pixel is computed from the same inputs by the same operations, padded,
tiled or not. On CPU (XLA's convolutions sum each output pixel in the same order whatever the
shape) the float32 output of a tiled or padded pass is identical to the bit to the whole image's
(tested for EDSR x2/x3/x4 and MDSR, with and without the self-ensemble; measured for the EDSR
baseline and the full EDSR: ``experiments/perf/RESULTS.md``). On GPU and TPU the convolution
algorithm may be chosen per shape, so tiles there can differ from the whole image by float32
rounding, which can move a quantised pixel by one grey level where its value lies at .5.
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
    """Run ``fn`` on fixed ``tile x tile`` LR tiles and stitch the interiors of the outputs.

    Tiles are placed on a grid with stride ``tile - 2 * overlap`` and shifted to stay inside the
    image; each output pixel is taken from a tile where it lies at least ``overlap`` LR pixels
    from every cut edge (image borders are not cuts). An image smaller than the tile is padded at
    the bottom/right: with ``with_valid=True`` ``fn`` is told which part is image and can ignore
    the rest exactly (:func:`edsr_jax.inference.make_upscaler`); otherwise the edge pixels are
    replicated, which changes the output near those borders. Tiles run one at a time and are
    converted to float32 one at a time; host memory holds the input, the output and a few tiles.

    Args:
      fn: ``fn(tile) -> out`` (NHWC, out ``scale`` times larger); with ``with_valid``,
        ``fn(tile, valid)`` where ``valid`` is int32 ``[top, bottom, left, right]``: the rows and
        columns of the tile that hold image pixels.
      x: NHWC input (numpy or JAX; uint8 or float).
      scale: output/input size ratio.
      tile: tile size in LR pixels.
      overlap: context kept around each tile's interior (at least the receptive radius).
      with_valid: pass ``valid`` to ``fn`` and pad with zeros.
      with_core: also pass ``core``, int32 ``[top, bottom, left, right]``: the part of the tile
        that is kept; ``fn`` then returns the output of that part only.
      out: where to write the output (N, H * scale, W * scale, C_out), e.g. a uint8 or
        memory-mapped array; default a new float32 array.
      finish: applied to each tile's kept part before it is stored (e.g. quantisation to uint8).
      in_flight: tiles dispatched before the first is fetched (``fn`` may return device arrays
        still being computed, e.g. on several devices); 1: one at a time.

    Returns:
      ``out`` (float32 (N, H * scale, W * scale, C_out) by default).

    Raises:
      UserError: ``tile <= 2 * overlap``.
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
            ty, tx = cy0, cx0  # (fn returned the kept part only)
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
