"""SRResNet (Ledig et al. 2017), the batch-norm network EDSR (Lim et al. 2017, Sec. 3.1) ablates against.

Same interface as :class:`~edsr_jax.models.EDSR` (NHWC [0, 255], mean shift), plus a
``batch_stats`` collection: ``model.apply(variables, lr, train=True, mutable=["batch_stats"])``.
Parameter names: ``head``, ``head_act``, ``block_{i}/{conv1,bn1,conv2,bn2}``, ``body_end``,
``body_end_bn``, ``upsample/{conv_k,act_k}``, ``tail``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from edsr_jax.models.conv import Conv
from edsr_jax.models.edsr import (
    EDSR,
    KERNEL_SIZE,
    MDSR,
    PRE_PROCESS_BLOCKS,
    PRE_PROCESS_KERNEL_SIZE,
    _check_input,
    _conv_like,
    _mean_shift,
    pixel_shuffle,
    tail_radius,
    upsample_factors,
)

# Kernel size of the head and tail convs (Ledig et al., Fig. 4: k9n64s1 and k9n3s1).
OUTER_KERNEL_SIZE = 9
# PReLU's initial slope: PyTorch's nn.PReLU default (one slope per layer).
PRELU_INIT = 0.25
# Batch norm as PyTorch's nn.BatchNorm2d: running = 0.9 * running + 0.1 * batch, eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

Dtype = Any


def _prelu(module, name: str) -> nn.PReLU:
    return nn.PReLU(param_dtype=module.param_dtype, negative_slope_init=PRELU_INIT, name=name)


def _batch_norm(module, train: bool, name: str) -> nn.BatchNorm:
    """PyTorch-like batch norm: batch statistics when ``train``, running averages otherwise."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=module.dtype,
        param_dtype=module.param_dtype,
        use_fast_variance=False,  # mean((x - mean)^2), as PyTorch computes it
        name=name,
    )


class BNResBlock(nn.Module):
    """``x + bn2(conv2(relu(bn1(conv1(x)))))``: EDSR's block plus two batch norms."""

    num_features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        f = self.num_features
        y = _conv_like(self, f, "conv1")(x)
        y = nn.relu(_batch_norm(self, train, "bn1")(y))
        y = _conv_like(self, f, "conv2")(y)
        return x + _batch_norm(self, train, "bn2")(y)


class PReLUUpsampler(nn.Module):
    """Sub-pixel stages ``prelu(shuffle_r(conv_to_r*r*F(x)))``: x2 one, x3 one (r=3), x4 two (r=2)."""

    scale: int
    num_features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for k, r in enumerate(upsample_factors(self.scale)):
            x = _conv_like(self, r * r * self.num_features, f"conv_{k}")(x)
            x = _prelu(self, f"act_{k}")(pixel_shuffle(x, r))
        return x


class SRResNet(nn.Module):
    """9x9 head + PReLU, B BN residual blocks, conv + BN with a long skip, PReLU upsampler, 9x9 tail.

    The block uses ReLU, as EDSR's Fig. 2 draws it, so it differs from EDSR's only by the batch norms
    the paper removes. Batch norm is PyTorch's defaults, except that Flax keeps the biased variance in
    the running average, and under ``jit`` the statistics are the global batch's (DDP: per GPU).
    Parameters at B16, F64: x2 1,401,733; x3 1,586,373; x4 1,549,446.
    """

    scale: int = 2
    num_blocks: int = 16
    num_features: int = 64
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, scale: int | None = None, train: bool = False) -> jax.Array:
        """SR images (N, H*scale, W*scale, 3), float32, of NHWC [0, 255] ``x``.

        ``train`` normalises with (and updates) batch statistics; ``scale`` is None or ``self.scale``.
        """
        if scale is not None and scale != self.scale:
            raise ValueError(f"this SRResNet upscales x{self.scale}, got scale={scale}")
        _check_input(x)
        f, k = self.num_features, OUTER_KERNEL_SIZE
        x = _mean_shift(x, -1.0).astype(self.dtype or jnp.float32)
        x = Conv(f, k, 3, self.dtype, self.param_dtype, name="head")(x)
        x = _prelu(self, "head_act")(x)
        y = x
        for i in range(self.num_blocks):
            y = BNResBlock(f, self.dtype, self.param_dtype, name=f"block_{i}")(y, train)
        y = _batch_norm(self, train, "body_end_bn")(_conv_like(self, f, "body_end")(y))
        x = PReLUUpsampler(self.scale, f, self.dtype, self.param_dtype, name="upsample")(x + y)
        x = Conv(3, k, f, self.dtype, self.param_dtype, name="tail")(x)
        return _mean_shift(x, 1.0)

    @property
    def scales(self) -> tuple[int, ...]:
        """The scales this model upscales by: ``(scale,)``."""
        return (self.scale,)


def srresnet(scale: int = 2, **kwargs) -> SRResNet:
    """SRResNet as Ledig et al. train it: B16, F64."""
    return SRResNet(scale=scale, num_blocks=16, num_features=64, **kwargs)


def receptive_radius(model: EDSR | MDSR | SRResNet) -> int:
    """How many LR pixels away an output pixel can see (eval mode), rounded up: the overlap for exact tiling.

    Each KxK conv adds K//2 pixels at its resolution (1/r LR pixel at r times the LR size).
    """
    inner = KERNEL_SIZE // 2
    if not isinstance(model, SRResNet):
        trunk = inner * (1 + 2 * int(model.num_blocks) + 1)
        pre = PRE_PROCESS_BLOCKS * 2 * (PRE_PROCESS_KERNEL_SIZE // 2) if isinstance(model, MDSR) else 0
        return trunk + pre + tail_radius(model)
    outer = OUTER_KERNEL_SIZE // 2
    lr = outer + inner * (2 * int(model.num_blocks) + 1 + 1)
    up = inner / 2 if model.scale == 4 else 0.0
    return int(math.ceil(lr + up + outer / model.scale))
