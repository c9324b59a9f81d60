"""SRResNet (Ledig et al., CVPR 2017), the network EDSR (Lim et al. 2017, Sec. 3.1) ablates against.

The generator of SRGAN trained alone (with an L2 loss): a 9x9 head conv + PReLU, B residual blocks
``x + bn2(conv2(relu(bn1(conv1(x)))))``, a conv + batch norm closing the body with a long skip
from the head, sub-pixel upsampling stages (conv, pixel shuffle, PReLU) and a 9x9 conv to RGB.
EDSR's residual block is this block without its two batch norms.

Inputs and outputs are NHWC float images in [0, 255] with the DIV2K mean subtracted on input and
added on output, exactly like :class:`edsr_jax.models.EDSR`, so the same trainer, upscaler and
evaluator run it. Unlike EDSR it has a second variable collection, ``batch_stats``::

    model = models.srresnet(scale=4)
    variables = models.init(model, rng)                 # {"params": ..., "batch_stats": ...}
    sr = model.apply(variables, lr)                     # eval: running averages
    sr, updates = model.apply(variables, lr, train=True, mutable=["batch_stats"])

Parameter names: ``head``, ``head_act``, ``block_{i}/{conv1,bn1,conv2,bn2}``, ``body_end``,
``body_end_bn``, ``upsample/{conv_k,act_k}``, ``tail``. This module imports only jax, flax, numpy.
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
    """``x + bn2(conv2(relu(bn1(conv1(x)))))``: SRResNet's block, EDSR's block plus two batch norms."""

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
    """SRResNet: head 9x9 + PReLU, B BN residual blocks, conv + BN with a long skip, upsampler, 9x9 tail.

    The residual block uses ReLU, as EDSR's Fig. 2 draws SRResNet's block, not Ledig et al.'s
    PReLU: this model is here as EDSR's ablation baseline, and with ReLU the two residual blocks
    differ only by the batch norms the paper removes. The head and every upsampling stage keep
    Ledig's PReLU (one slope per layer, PyTorch's ``nn.PReLU()``, initialised to 0.25); the x3
    upsampler (not in Ledig et al.) is one stage conv F->9F, pixel shuffle 3, PReLU.

    Batch norm follows PyTorch's ``nn.BatchNorm2d`` defaults: eps 1e-5, running averages updated
    as ``0.9 * running + 0.1 * batch`` (flax momentum 0.9). One difference: Flax keeps the biased
    batch variance in the running average where PyTorch keeps the unbiased one (a factor
    n/(n-1), 1 + 2.7e-5 for a batch of 16 48x48 patches). Under ``jit`` with a batch sharded over
    devices the statistics are those of the global batch (PyTorch's DDP uses each GPU's own).

    Exact parameter counts at B16, F64 (mean shift excluded; batch-norm running averages are not
    parameters): x2 1,401,733; x3 1,586,373; x4 1,549,446.

    Attributes:
      scale: upscaling factor (2, 3 or 4).
      num_blocks: number of residual blocks B.
      num_features: number of feature maps F.
      dtype: computation dtype (e.g. ``jnp.bfloat16``); mean shift, batch statistics and output
        stay float32.
      param_dtype: parameter dtype.
    """

    scale: int = 2
    num_blocks: int = 16
    num_features: int = 64
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, scale: int | None = None, train: bool = False) -> jax.Array:
        """Upscales ``x`` (NHWC, [0, 255]); ``train`` normalises with batch statistics.

        Args:
          x: LR images (N, H, W, 3).
          scale: None or ``self.scale`` (the argument EDSR and MDSR take).
          train: use and update batch statistics (call ``apply`` with ``mutable=["batch_stats"]``);
            otherwise normalise with the running averages.

        Returns:
          SR images (N, H*scale, W*scale, 3), float32.
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
    """SRResNet as Ledig et al. train it: B16, F64 (1.40M parameters at x2, 1.55M at x4)."""
    return SRResNet(scale=scale, num_blocks=16, num_features=64, **kwargs)


def receptive_radius(model: EDSR | MDSR | SRResNet) -> int:
    """How many LR pixels away an output pixel can see (eval mode), rounded up: an overlap this
    large makes tiling exact.

    Each KxK conv adds K//2 pixels at its resolution (1/r LR pixel at r times the LR size). EDSR
    and MDSR: head, 2 per block, body end, then :func:`~edsr_jax.models.edsr.tail_radius`; MDSR's
    5x5 pre-processing blocks add 8. SRResNet (batch norm with running averages is per pixel; in
    train mode batch statistics couple every pixel): the 9x9 head 4, 2 per block, body end and
    first upsampler conv 1 each, a x4 upsampler's second conv 1/2, the 9x9 tail 4/s.
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
