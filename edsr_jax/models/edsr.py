"""EDSR and MDSR (Lim et al., CVPR-W 2017) in Flax linen, as the official code builds them.

Architecture, mean shift and init: ``docs/protocol.md`` "Architecture". Pixel shuffle is PyTorch's
channel-major order, so official weights load by an OIHW -> HWIO transpose. Keys (mapped by
``edsr_jax.interop.torch``): EDSR ``head``, ``block_{i}/{conv1,conv2}``, ``body_end``,
``upsample/conv_{k}``, ``tail``; MDSR adds ``pre_process_x{s}_{0,1}`` and ``upsample_x{s}``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from edsr_jax.models.conv import Conv

# DIV2K mean RGB as fractions of the RGB range (official code, rgb_range = 255).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
# The value range every model in this package takes and returns.
RGB_RANGE = 255.0
# Scales the official upsamplers support (x4 is two x2 stages).
SUPPORTED_SCALES = (2, 3, 4)
# Kernel sizes: every conv but MDSR's pre-processing blocks, and those.
KERNEL_SIZE = 3
PRE_PROCESS_KERNEL_SIZE = 5
# Residual blocks in each of MDSR's per-scale pre-processing modules.
PRE_PROCESS_BLOCKS = 2
# What one call computes: all, the trunk (to the features after the global skip) or the tail
# (upsampler to image); inference runs the tail, scale^2 times larger, in pieces.
PARTS = ("all", "trunk", "tail")

Dtype = Any


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
    """PyTorch's ``nn.PixelShuffle`` on NHWC: ``out[h*r+i, w*r+j, c] = in[h, w, c*r*r + i*r + j]``."""
    n, h, w, c = x.shape
    if c % (r * r):
        raise ValueError(f"pixel_shuffle needs channels divisible by r*r={r * r}, got {c}")
    oc = c // (r * r)
    x = x.reshape(n, h, w, oc, r, r)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * r, w * r, oc)


class ResBlock(nn.Module):
    """``x + res_scale * conv2(relu(conv1(x)))``; no batch norm, no ReLU after the add."""

    features: int
    kernel_size: int = KERNEL_SIZE
    res_scale: float = 1.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f, k = self.features, self.kernel_size
        y = Conv(f, k, f, self.dtype, self.param_dtype, name="conv1")(x)
        y = nn.relu(y)
        y = Conv(f, k, f, self.dtype, self.param_dtype, name="conv2")(y)
        if self.res_scale != 1.0:
            y = y * jnp.asarray(self.res_scale, y.dtype)
        return x + y


def upsample_factors(scale: int) -> tuple[int, ...]:
    """The pixel-shuffle factors of a sub-pixel upsampler: x2 (2,), x3 (3,), x4 (2, 2)."""
    if scale not in SUPPORTED_SCALES:
        raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {scale}")
    return (2, 2) if scale == 4 else (scale,)


class Upsampler(nn.Module):
    """Sub-pixel upsampler without activation: x2/x3 one conv + shuffle, x4 two x2 stages."""

    scale: int
    features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f = self.features
        for k, r in enumerate(upsample_factors(self.scale)):
            x = Conv(r * r * f, KERNEL_SIZE, f, self.dtype, self.param_dtype, name=f"conv_{k}")(x)
            x = pixel_shuffle(x, r)
        return x


def _mean_shift(x: jax.Array, sign: float) -> jax.Array:
    """``x`` (float32) minus (sign -1) or plus (sign +1) the DIV2K mean."""
    return x.astype(jnp.float32) + sign * RGB_RANGE * jnp.asarray(DIV2K_RGB_MEAN, jnp.float32)


def _check_input(x: jax.Array) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected an NHWC batch of RGB images (N, H, W, 3), got shape {tuple(x.shape)}")


def _conv_like(module, features: int, name: str, in_features: int | None = None) -> Conv:
    """A 3x3 :class:`Conv` with ``module``'s dtypes; ``in_features`` defaults to its F."""
    f_in = module.num_features if in_features is None else in_features
    return Conv(features, KERNEL_SIZE, f_in, module.dtype, module.param_dtype, name=name)


def _head(module, x: jax.Array) -> jax.Array:
    """Checks the input, subtracts the DIV2K mean (float32), casts to the compute dtype, head conv."""
    _check_input(x)
    x = _mean_shift(x, -1.0).astype(module.dtype or jnp.float32)
    return _conv_like(module, module.num_features, "head", in_features=3)(x)


def _body(module) -> list[nn.Module]:
    """The shared body: ``num_blocks`` ResBlocks then one conv (the global skip is the caller's)."""
    f = module.num_features
    blocks = [
        ResBlock(f, KERNEL_SIZE, module.res_scale, module.dtype, module.param_dtype, name=f"block_{i}")
        for i in range(module.num_blocks)
    ]
    return [*blocks, _conv_like(module, f, "body_end")]


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")


def _run(layers: list[nn.Module], x: jax.Array) -> jax.Array:
    for layer in layers:
        x = layer(x)
    return x


class EDSR(nn.Module):
    """EDSR: sub_mean, head, B ResBlocks + conv with a global skip, upsampler, conv to RGB, add_mean.

    ``res_scale`` is 0.1 for the full EDSR, 1 otherwise; the mean shift and output stay float32.
    """

    scale: int = 2
    num_blocks: int = 16
    num_features: int = 64
    res_scale: float = 1.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, scale: int | None = None, part: str = "all") -> jax.Array:
        """Upscales ``x`` (NHWC, [0, 255]); ``part`` (:data:`PARTS`) computes a part only."""
        if scale is not None and scale != self.scale:
            raise ValueError(f"this EDSR upscales x{self.scale}, got scale={scale}")
        _check_part(part)
        if part != "tail":
            x = _head(self, x)
            x = x + _run(_body(self), x)
            if part == "trunk":
                return x
        x = Upsampler(self.scale, self.num_features, self.dtype, self.param_dtype, name="upsample")(x)
        x = _conv_like(self, 3, "tail")(x)
        return _mean_shift(x, 1.0)

    @property
    def scales(self) -> tuple[int, ...]:
        """The scales this model upscales by: ``(scale,)``."""
        return (self.scale,)


class MDSR(nn.Module):
    """MDSR: a shared trunk with per-scale 5x5 pre-processing and upsamplers; ``apply(..., scale=s)``."""

    scales: tuple[int, ...] = SUPPORTED_SCALES
    num_blocks: int = 16
    num_features: int = 64
    res_scale: float = 1.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, scale: int | None = None, part: str = "all") -> jax.Array:
        """Upscales ``x`` (NHWC, [0, 255]) by ``scale``; ``part`` (:data:`PARTS`) computes a part only."""
        if scale is None:
            if len(self.scales) != 1:
                raise ValueError(f"MDSR serves scales {tuple(self.scales)}: pass scale=")
            scale = self.scales[0]
        if scale not in self.scales:
            raise ValueError(f"this MDSR serves scales {tuple(self.scales)}, got scale={scale}")
        _check_part(part)
        x = x if part == "tail" else _head(self, x)
        # Flax creates parameters on first use: at init, run every scale's branch once.
        branch_scales = self.scales if self.is_initializing() else (scale,)
        body = _body(self)
        tail = _conv_like(self, 3, "tail")
        f = self.num_features
        out = None
        for s in branch_scales:
            y = x
            if part != "tail":
                for k in range(PRE_PROCESS_BLOCKS):
                    y = ResBlock(
                        f,
                        PRE_PROCESS_KERNEL_SIZE,
                        1.0,
                        self.dtype,
                        self.param_dtype,
                        name=f"pre_process_x{s}_{k}",
                    )(y)
                y = y + _run(body, y)
            if part != "trunk":
                y = Upsampler(s, f, self.dtype, self.param_dtype, name=f"upsample_x{s}")(y)
                y = tail(y)
            if s == scale:
                out = y
        return out if part == "trunk" else _mean_shift(out, 1.0)


# --- presets (paper Table 1/2 and the official model zoo) ---------------------------------------


def edsr_baseline(scale: int = 2, **kwargs) -> EDSR:
    """EDSR baseline: B16, F64, no residual scaling (1.37M parameters at x2)."""
    return EDSR(scale=scale, num_blocks=16, num_features=64, res_scale=1.0, **kwargs)


def edsr(scale: int = 2, **kwargs) -> EDSR:
    """The full EDSR: B32, F256, residual scaling 0.1 (40.7M parameters at x2)."""
    return EDSR(scale=scale, num_blocks=32, num_features=256, res_scale=0.1, **kwargs)


def mdsr_baseline(**kwargs) -> MDSR:
    """MDSR baseline: B16, F64, scales 2/3/4 (3.2M parameters)."""
    return MDSR(scales=SUPPORTED_SCALES, num_blocks=16, num_features=64, **kwargs)


def mdsr(**kwargs) -> MDSR:
    """The full MDSR: B80, F64, scales 2/3/4 (7.95M parameters)."""
    return MDSR(scales=SUPPORTED_SCALES, num_blocks=80, num_features=64, **kwargs)


# --- receptive field (the whole model: edsr_jax.models.receptive_radius) -----------------------


def tail_radius(model: EDSR | MDSR) -> int:
    """LR pixels an output of ``part="tail"`` can see in its input features, rounded up."""
    extra = 0.0
    for s in model.scales:
        up = 0.5 if s == 4 else 0.0  # second x2 stage
        extra = max(extra, up + 1.0 / s)  # + tail at the output resolution
    return int(math.ceil(1 + extra))
