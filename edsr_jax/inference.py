"""Inference: :func:`make_upscaler` wraps a model into ``upscale(lr_uint8) -> sr_float``.

Images are zero-padded to a size bucket or cut into overlapping tiles, so many sizes share a few
compiled programs; every conv input is zeroed outside the image, which makes that exact
(:mod:`edsr_jax.tiling`). Also the one scale check and the one self-ensemble.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from edsr_jax import tiling
from edsr_jax.errors import UserError

# Whole images are padded to a multiple of this (LR pixels): few compiled shapes for many sizes.
BUCKET = 16
# Number of dihedral transforms used by the self-ensemble.
NUM_TRANSFORMS = 8
# Activation bytes a tile's tail (upsampler, last conv) may hold at once: it runs in strips.
TAIL_STRIP_BYTES = 128 * 2**20


def dihedral(x, k: int):
    """Transform ``k`` (0..7) of (..., H, W, C): flip W (bit 0), flip H (bit 1), transpose (bit 2)."""
    if k & 1:
        x = x[..., ::-1, :]
    if k & 2:
        x = x[..., ::-1, :, :]
    if k & 4:
        x = x.swapaxes(-3, -2)
    return x


def undo_dihedral(x, k: int):
    """Inverse of :func:`dihedral` (the same steps in reverse order)."""
    if k & 4:
        x = x.swapaxes(-3, -2)
    if k & 2:
        x = x[..., ::-1, :, :]
    if k & 1:
        x = x[..., ::-1, :]
    return x


def check_scale(model, scale: int | None, what: str = "this model") -> int:
    """The scale to run ``model`` at: ``scale`` if it has it, or its only scale when ``scale`` is None.

    Raises:
      UserError: naming ``what`` and the scales the model has.
    """
    have = tuple(int(s) for s in model.scales)
    names = ", ".join(f"x{s}" for s in have)
    if scale is None:
        if len(have) != 1:
            raise UserError(f"{what} upscales by {names}: choose one of them as the scale")
        return have[0]
    if int(scale) not in have:
        raise UserError(f"{what} upscales by {names} only, not x{scale}")
    return int(scale)


def dihedral_valid(valid, k: int, size: int) -> np.ndarray:
    """``valid = [top, bottom, left, right]`` of a square ``size`` tile after :func:`dihedral` ``k``."""
    top, bottom, left, right = (int(v) for v in valid)
    if k & 1:
        left, right = size - right, size - left
    if k & 2:
        top, bottom = size - bottom, size - top
    if k & 4:
        top, bottom, left, right = left, right, top, bottom
    return np.array([top, bottom, left, right], np.int32)


def _conv_input_mask(valid, lr_hw: tuple[int, int]):
    """A flax interceptor zeroing every conv input outside ``valid`` (LR pixels, scaled by r)."""
    import flax.linen as nn
    import jax.numpy as jnp

    from edsr_jax import models

    def interceptor(next_fun, args, kwargs, context):
        if not (isinstance(context.module, (models.Conv, nn.Conv)) and context.method_name == "__call__"):
            return next_fun(*args, **kwargs)
        feat = args[0]
        r = feat.shape[1] // lr_hw[0]
        if feat.shape[1] != r * lr_hw[0] or feat.shape[2] != r * lr_hw[1]:
            raise ValueError(f"conv input {tuple(feat.shape)} is not a multiple of the LR size {lr_hw}")
        rows = jnp.arange(feat.shape[1])
        cols = jnp.arange(feat.shape[2])
        keep_r = (rows >= valid[0] * r) & (rows < valid[1] * r)
        keep_c = (cols >= valid[2] * r) & (cols < valid[3] * r)
        mask = (keep_r[:, None] & keep_c[None, :]).astype(feat.dtype)[None, :, :, None]
        return next_fun(feat * mask, *args[1:], **kwargs)

    return interceptor


def masked_forward(model, scale: int, part: str = "all") -> Callable:
    """``f(variables, x, valid)``: the model as if run on the ``valid`` crop of ``x`` alone (not jitted).

    Each conv sees zeros outside ``valid``, as SAME padding does at a real border. ``part`` selects
    an EDSR/MDSR's ``"trunk"`` or ``"tail"`` (``x`` then the trunk's features).
    """
    import flax.linen as nn

    parts = {} if part == "all" else {"part": part}

    def forward(variables, x, valid):
        with nn.intercept_methods(_conv_input_mask(valid, (x.shape[1], x.shape[2]))):
            return model.apply(variables, x, scale=scale, **parts)

    return forward


class Upscaler:
    """``upscaler(lr) -> sr``: float32 (H*s, W*s, 3), unquantised, of an (H, W, 3) image in [0, 255].

    ``traces`` counts compilations, which stay bounded over many image sizes.
    """

    def __init__(
        self,
        model,
        variables,
        scale: int,
        *,
        self_ensemble: bool,
        tile: int | None,
        overlap: int,
        bucket: int = BUCKET,
        devices: Sequence | None = None,
        compiler_options: dict | None = None,
    ):
        import jax

        from edsr_jax import compiler_options as xla_options
        from edsr_jax import models
        from edsr_jax.models.edsr import tail_radius

        self.model, self.variables, self.scale = model, variables, int(scale)
        self.self_ensemble, self.tile, self.overlap, self.bucket = self_ensemble, tile, overlap, bucket
        self.traces = 0
        forward = masked_forward(model, self.scale)

        def counted(variables, x, valid):
            self.traces += 1  # runs only while tracing
            return forward(variables, x, valid).astype("float32")

        # One copy of the variables per device; images and tiles go round the devices.
        self.devices = list(devices) if devices else [None]
        if compiler_options is None:
            platform = xla_options.platform_of([d for d in self.devices if d is not None])
            compiler_options = xla_options.for_program(xla_options.INFER, platform)
        self._options = dict(compiler_options)
        self._forward = jax.jit(counted, compiler_options=self._options)
        # Tiles of an EDSR or MDSR run in two parts (split_tile): the trunk, then the tail in strips.
        self._split = tile is not None and isinstance(model, models.EDSR | models.MDSR)
        if self._split:
            self.margin = tail_radius(model)
            trunk = masked_forward(model, self.scale, "trunk")

            def counted_trunk(variables, x, valid):
                self.traces += 1
                return trunk(variables, x, valid)

            self._trunk = jax.jit(counted_trunk, compiler_options=self._options)
            self._tails: dict[tuple[int, int], Callable] = {}
        self._variables = [variables if d is None else jax.device_put(variables, d) for d in self.devices]
        self._turn = itertools.cycle(range(len(self.devices)))

    def _run(self, x: np.ndarray, valid: np.ndarray, device: int):
        """The forward pass on device number ``device`` (not waited for)."""
        import jax

        target = self.devices[device]
        if target is not None:
            x, valid = jax.device_put(x, target), jax.device_put(valid, target)
        return self._forward(self._variables[device], x, valid)

    def _tail_of(self, rows: int, cols: int) -> Callable:
        """The jitted tail of a ``rows x cols`` window of a tile's features."""
        import jax

        if (rows, cols) not in self._tails:
            tail = masked_forward(self.model, self.scale, "tail")

            def window(variables, features, corner, valid):
                self.traces += 1
                n, f = features.shape[0], features.shape[-1]
                part = jax.lax.dynamic_slice(features, (0, corner[0], corner[1], 0), (n, rows, cols, f))
                return tail(variables, part, valid).astype("float32")

            self._tails[rows, cols] = jax.jit(window, compiler_options=self._options)
        return self._tails[rows, cols]

    def _strip_rows(self, cols: int) -> int:
        """Feature rows per tail strip ``cols`` wide that fit :data:`TAIL_STRIP_BYTES`."""
        per_row = 2 * cols * self.scale**2 * int(self.model.num_features) * 4
        return max(2 * self.margin + 1, TAIL_STRIP_BYTES // per_row)

    def split_tile(self, x: np.ndarray, valid: np.ndarray, core: np.ndarray, device: int):
        """The output of ``core`` of one tile: the trunk on the tile, then the scale^2-larger tail in strips.

        Exact as tiling is: each kept pixel lies at least the tail's radius from every cut.
        """
        import jax
        import jax.numpy as jnp

        target, variables = self.devices[device], self._variables[device]
        if target is not None:
            x = jax.device_put(x, target)
        features = self._trunk(variables, x, valid)
        size, m, s = x.shape[1], self.margin, self.scale
        width = min(self.tile - 2 * self.overlap + 2 * m, size)
        top = min(max(int(core[0]) - m, 0), size - width)
        left = min(max(int(core[2]) - m, 0), size - width)
        rows = self._strip_rows(width)
        strips = [(0, 0, width)] if rows >= width else tiling.tile_starts(width, width, rows, rows - 2 * m, m)
        rows = min(rows, width)
        tail = self._tail_of(rows, width)
        outputs = []
        for start, keep0, keep1 in strips:
            y0 = top + start
            window_valid = np.clip(
                np.asarray(valid, np.int64) - [y0, y0, left, left], 0, [rows, rows, width, width]
            ).astype(np.int32)
            y = tail(variables, features, np.array([y0, left], np.int32), window_valid)
            outputs.append(y[:, (keep0 - start) * s : (keep1 - start) * s])
        out = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=1)
        return out[:, (core[0] - top) * s : (core[1] - top) * s, (core[2] - left) * s : (core[3] - left) * s]

    def _kept(self, x: np.ndarray, valid: np.ndarray, core: np.ndarray, device: int):
        """The output of the kept part ``core`` of one tile on ``device``."""
        if self._split:
            return self.split_tile(x, valid, core, device)
        s = self.scale
        return self._run(x, valid, device)[:, core[0] * s : core[1] * s, core[2] * s : core[3] * s]

    def _ensembled(self, run: Callable, x: np.ndarray, *boxes: np.ndarray):
        """``run(x, *boxes)``, averaged over the 8 dihedral transforms with ``self_ensemble``."""
        if not self.self_ensemble:
            return run(x, *boxes)
        size, total = x.shape[1], None
        for k in range(NUM_TRANSFORMS):
            moved = [dihedral_valid(b, k, size) for b in boxes]
            y = undo_dihedral(run(np.ascontiguousarray(dihedral(x, k)), *moved), k)
            total = y if total is None else total + y
        return total / NUM_TRANSFORMS

    def _tile(self, patch: np.ndarray, valid: np.ndarray, core: np.ndarray):
        """One tile's kept part on the next device (a tiled self-ensemble averages per tile)."""
        device = next(self._turn)
        return self._ensembled(lambda x, v, c: self._kept(x, v, c, device), patch, valid, core)

    def _padded(self, x: np.ndarray, device: int):
        """The forward pass of a (1, H, W, 3) image zero-padded to the size bucket."""
        h, w = x.shape[1:3]
        hp, wp = -(-h // self.bucket) * self.bucket, -(-w // self.bucket) * self.bucket
        padded = np.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
        return self._run(padded, np.array([0, h, 0, w], np.int32), device)[
            :, : h * self.scale, : w * self.scale
        ]

    def _whole(self, lr: np.ndarray, device: int):
        """One whole image on ``device``."""
        return self._ensembled(lambda x: self._padded(x, device), lr.astype(np.float32)[None])

    def set_variables(self, variables) -> None:
        """Runs the same compiled programs with new ``variables`` of the same shapes."""
        import jax

        self.variables = variables
        self._variables = [variables if d is None else jax.device_put(variables, d) for d in self.devices]

    def on_device(self, low_res):
        """``self(low_res)`` left on the device as a ``jax.Array``; whole images only."""
        if self.tile is not None:
            raise ValueError("on_device runs whole images; this upscaler tiles (tile is set)")
        return self._whole(self._check(low_res), 0)[0]

    def _check(self, lr) -> np.ndarray:
        lr = np.asarray(lr)
        if lr.ndim != 3 or lr.shape[-1] != 3:
            raise UserError(f"upscaler expects an (H, W, 3) RGB image, got shape {tuple(lr.shape)}")
        return lr

    def _tiled(self, lr: np.ndarray, out=None, finish=None) -> np.ndarray:
        return tiling.tiled(
            self._tile,
            lr[None],
            scale=self.scale,
            tile=self.tile,
            overlap=self.overlap,
            with_valid=True,
            with_core=True,
            out=out,
            finish=finish,
            in_flight=len(self.devices),
        )

    def tiles(self, low_res: np.ndarray) -> bool:
        """Whether ``low_res`` is tiled (a tile as large as the image runs it whole, unpadded)."""
        return self.tile is not None and self.tile < max(low_res.shape[:2])

    def map(self, images: Iterable) -> Iterator[np.ndarray]:
        """``self(lr)`` of each image, in order, one image per device in flight."""
        pending = collections.deque()
        for lr in images:
            lr = self._check(lr)
            if self.tiles(lr):
                while pending:
                    yield np.asarray(pending.popleft(), np.float32)[0]
                yield self._tiled(lr)[0]
                continue
            pending.append(self._whole(lr, next(self._turn)))
            if len(pending) >= len(self.devices):
                yield np.asarray(pending.popleft(), np.float32)[0]
        while pending:
            yield np.asarray(pending.popleft(), np.float32)[0]

    def __call__(self, low_res) -> np.ndarray:
        return next(iter(self.map([low_res])))

    def upscale_uint8(self, low_res, out: np.ndarray | None = None) -> np.ndarray:
        """The output quantised as scored images are, uint8 (H*s, W*s, 3).

        Tiled, each tile is quantised into ``out`` (e.g. memory-mapped) as it finishes, so host memory
        stays the output plus a few tiles.
        """
        from edsr_jax.imaging import metrics

        low_res = self._check(low_res)
        if out is None:
            out = np.empty((low_res.shape[0] * self.scale, low_res.shape[1] * self.scale, 3), np.uint8)
        if not self.tiles(low_res):
            out[...] = metrics.quantize_uint8(self(low_res))
            return out
        self._tiled(low_res, out=out[None], finish=metrics.quantize_uint8)
        return out


def make_upscaler(
    model,
    variables,
    scale: int | None = None,
    *,
    self_ensemble: bool = False,
    tile: int | None = None,
    overlap: int | None = None,
    dtype=None,
    devices: Sequence | None = None,
    compiler_options: dict | None = None,
) -> Upscaler:
    """An :class:`Upscaler` for ``model`` at ``scale`` (None: its only scale).

    Args:
      self_ensemble: average over the 8 dihedral transforms (EDSR+/MDSR+).
      tile: run on ``tile x tile`` LR tiles (bounded memory); None: whole images padded to ``BUCKET``.
      overlap: context around each tile; default the receptive radius, which makes tiling exact.
      dtype: computation dtype, e.g. ``jnp.bfloat16`` (parameters as given; output float32).
      devices: spread images and tiles over these devices; outputs equal one device's.
      compiler_options: XLA options (default: :func:`edsr_jax.compiler_options.for_program`).

    Raises:
      UserError: a scale the model does not have, or a tile too small for the overlap.
    """
    from edsr_jax import models

    scale = check_scale(model, scale)
    if dtype is not None:
        model = model.clone(dtype=dtype)
    overlap = models.receptive_radius(model) if overlap is None else int(overlap)
    if tile is not None and int(tile) <= 2 * overlap:
        raise UserError(
            f"tile size {tile} must be larger than twice the overlap {overlap} "
            f"(the model's receptive radius); use at least {2 * overlap + 16}"
        )
    return Upscaler(
        model,
        variables,
        int(scale),
        self_ensemble=self_ensemble,
        tile=None if tile is None else int(tile),
        overlap=overlap,
        devices=devices,
        compiler_options=compiler_options,
    )
