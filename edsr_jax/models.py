"""EDSR and MDSR (Lim et al., CVPR-W 2017) in Flax linen, exactly as the official code builds them.

Inputs and outputs are NHWC float images in [0, 255]. The DIV2K mean shift is a constant (not a
parameter), there is no batch norm, residual blocks are ``x + res_scale * conv2(relu(conv1(x)))``,
upsamplers use PyTorch's (channel-major) pixel-shuffle order so the official weights load by a
plain OIHW -> HWIO transpose, and parameters are initialised like PyTorch's ``nn.Conv2d``.

Parameter names follow the model's structure and are what ``edsr_jax.convert`` maps the official
``state_dict`` keys to:

* EDSR: ``head``, ``block_{i}/{conv1,conv2}``, ``body_end``, ``upsample/conv_{k}``, ``tail``.
* MDSR: ``head``, ``pre_process_x{s}_{0,1}/{conv1,conv2}`` (5x5), ``block_{i}/...``, ``body_end``,
  ``upsample_x{s}/conv_{k}``, ``tail``. Every per-scale module has ``_x{s}`` in its name.

This module imports only jax, flax, numpy and ``edsr_jax.ops`` (jax only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edsr_jax import ops

# DIV2K mean RGB as fractions of the RGB range (official code, rgb_range = 255).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
# The value range every model in this package takes and returns.
RGB_RANGE = 255.0
# Scales the official upsamplers support (x4 is two x2 stages).
SUPPORTED_SCALES = (2, 3, 4)

Dtype = Any


def torch_conv_kernel_init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32):
    """PyTorch ``nn.Conv2d`` default kernel init, U(+-1/sqrt(fan_in)), for an HWIO kernel."""
    fan_in = int(np.prod(shape[:-1]))
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _torch_bias_init(fan_in: int):
    """PyTorch ``nn.Conv2d`` default bias init, U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def pixel_shuffle(x: jax.Array, r: int) -> jax.Array:
    """PyTorch's ``nn.PixelShuffle`` on NHWC: ``out[h*r+i, w*r+j, c] = in[h, w, c*r*r + i*r + j]``."""
    n, h, w, c = x.shape
    if c % (r * r):
        raise ValueError(f"pixel_shuffle needs channels divisible by r*r={r * r}, got {c}")
    oc = c // (r * r)
    x = x.reshape(n, h, w, oc, r, r)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * r, w * r, oc)


class Conv(nn.Module):
    """A stride-1, SAME-padded conv with bias: the parameters and output of ``nn.Conv``.

    Parameters are ``kernel`` (HWIO) and ``bias``, initialised like PyTorch's ``nn.Conv2d``
    (U(+-1/sqrt(fan_in)) for both). It runs ``edsr_jax.ops.conv2d``, whose backward pass is
    faster on CPU (reverse-mode differentiation only).
    """

    features: int
    kernel_size: int
    in_features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        if k % 2 != 1:
            raise ValueError(f"Conv needs an odd kernel_size, got {k}")
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Conv {self.name!r} expects {self.in_features} input channels, got shape {x.shape}"
            )
        kernel = self.param(
            "kernel", torch_conv_kernel_init, (k, k, self.in_features, self.features), self.param_dtype
        )
        bias = self.param(
            "bias", _torch_bias_init(self.in_features * k * k), (self.features,), self.param_dtype
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return ops.conv2d(x, kernel, bias)


def torch_conv(
    features: int,
    kernel_size: int,
    in_features: int,
    dtype: Dtype | None = None,
    param_dtype: Dtype = jnp.float32,
    name: str | None = None,
) -> Conv:
    """A stride-1, SAME-padded conv with bias, initialised like PyTorch's ``nn.Conv2d``."""
    return Conv(features, kernel_size, in_features, dtype=dtype, param_dtype=param_dtype, name=name)


def _conv(features, kernel_size, module, name, in_features=None):
    in_features = module.num_features if in_features is None else in_features
    return torch_conv(features, kernel_size, in_features, module.dtype, module.param_dtype, name=name)


class ResBlock(nn.Module):
    """``x + res_scale * conv2(relu(conv1(x)))``; no batch norm, no ReLU after the add."""

    features: int
    kernel_size: int = 3
    res_scale: float = 1.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        f, k = self.features, self.kernel_size
        y = torch_conv(f, k, f, self.dtype, self.param_dtype, name="conv1")(x)
        y = nn.relu(y)
        y = torch_conv(f, k, f, self.dtype, self.param_dtype, name="conv2")(y)
        if self.res_scale != 1.0:
            y = y * jnp.asarray(self.res_scale, y.dtype)
        return x + y


class Upsampler(nn.Module):
    """Sub-pixel upsampler without activation: x2/x3 one conv + shuffle, x4 two x2 stages."""

    scale: int
    features: int
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.scale not in SUPPORTED_SCALES:
            raise ValueError(f"scale must be one of {SUPPORTED_SCALES}, got {self.scale}")
        factors = (2, 2) if self.scale == 4 else (self.scale,)
        for k, r in enumerate(factors):
            x = torch_conv(
                r * r * self.features, 3, self.features, self.dtype, self.param_dtype, name=f"conv_{k}"
            )(x)
            x = pixel_shuffle(x, r)
        return x


def _sub_mean(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32) - RGB_RANGE * jnp.asarray(DIV2K_RGB_MEAN, jnp.float32)


def _add_mean(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32) + RGB_RANGE * jnp.asarray(DIV2K_RGB_MEAN, jnp.float32)


def _make_trunk(module):
    """The shared body modules: ``num_blocks`` ResBlocks then one conv (the skip is the caller's)."""
    blocks = [
        ResBlock(
            module.num_features, 3, module.res_scale, module.dtype, module.param_dtype, name=f"block_{i}"
        )
        for i in range(module.num_blocks)
    ]
    return blocks + [_conv(module.num_features, 3, module, "body_end")]


def _head(module, x):
    """Checks the input, subtracts the DIV2K mean (float32), casts to the compute dtype, head conv."""
    _check_input(x)
    x = _sub_mean(x).astype(module.dtype or jnp.float32)
    return _conv(module.num_features, 3, module, "head", in_features=3)(x)


def _run(layers, x):
    for layer in layers:
        x = layer(x)
    return x


class EDSR(nn.Module):
    """EDSR: sub_mean, head, B ResBlocks + conv with a global skip, upsampler, conv to RGB, add_mean.

    Attributes:
      scale: upscaling factor (2, 3 or 4).
      num_blocks: number of residual blocks B.
      num_features: number of feature maps F.
      res_scale: residual scaling (0.1 for the full EDSR, 1 otherwise).
      dtype: computation dtype (e.g. ``jnp.bfloat16``); mean shift and output stay float32.
      param_dtype: parameter dtype.
    """

    scale: int = 2
    num_blocks: int = 16
    num_features: int = 64
    res_scale: float = 1.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, scale: int | None = None) -> jax.Array:
        if scale is not None and scale != self.scale:
            raise ValueError(f"this EDSR upscales x{self.scale}, got scale={scale}")
        x = _head(self, x)
        x = x + _run(_make_trunk(self), x)
        x = Upsampler(self.scale, self.num_features, self.dtype, self.param_dtype, name="upsample")(x)
        x = _conv(3, 3, self, "tail")(x)
        return _add_mean(x)

    @property
    def scales(self) -> tuple[int, ...]:
        return (self.scale,)


class MDSR(nn.Module):
    """MDSR: one shared trunk with per-scale pre-processing (2 ResBlocks, 5x5) and upsamplers.

    Called as ``model.apply(variables, lr, scale=s)``; ``model.init`` creates every scale's
    parameters whatever ``scale`` it is given.

    Attributes:
      scales: the scales the model serves, in official index order (x2, x3, x4).
      num_blocks: number of shared residual blocks B.
      num_features: number of feature maps F.
      res_scale: residual scaling of the shared blocks (1 in the paper).
      dtype: computation dtype.
      param_dtype: parameter dtype.
    """

    scales: tuple[int, ...] = SUPPORTED_SCALES
    num_blocks: int = 16
    num_features: int = 64
    res_scale: float = 1.0
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, scale: int | None = None) -> jax.Array:
        if scale is None:
            if len(self.scales) != 1:
                raise ValueError(f"MDSR serves scales {tuple(self.scales)}: pass scale=")
            scale = self.scales[0]
        if scale not in self.scales:
            raise ValueError(f"this MDSR serves scales {tuple(self.scales)}, got scale={scale}")
        x = _head(self, x)
        # Flax creates parameters on first use: at init, run every scale's branch once.
        branch_scales = self.scales if self.is_initializing() else (scale,)
        trunk = _make_trunk(self)
        tail = _conv(3, 3, self, "tail")
        out = None
        for s in branch_scales:
            y = x
            for k in range(2):
                y = ResBlock(
                    self.num_features, 5, 1.0, self.dtype, self.param_dtype, name=f"pre_process_x{s}_{k}"
                )(y)
            y = y + _run(trunk, y)
            y = Upsampler(s, self.num_features, self.dtype, self.param_dtype, name=f"upsample_x{s}")(y)
            y = tail(y)
            if s == scale:
                out = y
        return _add_mean(out)


def _check_input(x: jax.Array) -> None:
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected an NHWC batch of RGB images (N, H, W, 3), got shape {tuple(x.shape)}")


SRModel = EDSR | MDSR


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


PRESETS = {
    "edsr_baseline": edsr_baseline,
    "edsr": edsr,
    "mdsr_baseline": mdsr_baseline,
    "mdsr": mdsr,
}


# --- helpers ------------------------------------------------------------------------------------


def init(model: SRModel, rng: jax.Array, lr_size: int = 8):
    """Initialises every parameter of ``model`` like PyTorch's ``nn.Conv2d`` (the official init).

    Equivalent in distribution to ``model.init(rng, x, scale=...)`` (each kernel and bias
    ~ U(+-1/sqrt(fan_in)) of its conv), but draws all values with ONE uniform call and scales them
    per tensor: XLA compiles one random-number kernel instead of one per parameter shape, which cuts
    the compile time of a (jitted) initialiser on CPU from ~10-20 s to about a second.

    Args:
      model: an EDSR or MDSR.
      rng: a JAX PRNG key.
      lr_size: side of the dummy input used to trace the parameter shapes (any value works).

    Returns:
      ``{"params": ...}`` in ``model.param_dtype``.
    """
    x = jnp.zeros((1, lr_size, lr_size, 3), jnp.float32)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), x, scale=model_scales(model)[0])
    )["params"]
    flat = flax.traverse_util.flatten_dict(shapes)
    bounds = {}
    for path in flat:
        kernel = flat[(*path[:-1], "kernel")]  # a bias takes the fan_in of its conv's kernel
        bounds[path] = 1.0 / math.sqrt(int(np.prod(kernel.shape[:-1])))
    total = sum(int(np.prod(leaf.shape)) for leaf in flat.values())
    draws = jax.random.uniform(rng, (total,), jnp.float32, -1.0, 1.0)
    params, offset = {}, 0
    for path, leaf in flat.items():
        size = int(np.prod(leaf.shape))
        value = draws[offset : offset + size].reshape(leaf.shape) * bounds[path]
        params[path] = value.astype(leaf.dtype)
        offset += size
    return {"params": flax.traverse_util.unflatten_dict(params)}


def model_scales(model: SRModel) -> tuple[int, ...]:
    """The scales ``model`` can upscale by."""
    return (model.scale,) if isinstance(model, EDSR) else tuple(model.scales)


def count_params(params) -> int:
    """Number of scalars in a parameter tree."""
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def model_spec(model: SRModel) -> dict:
    """A JSON-able description of the architecture (no dtypes); inverse of :func:`from_spec`."""
    spec = {
        "num_blocks": int(model.num_blocks),
        "num_features": int(model.num_features),
        "res_scale": float(model.res_scale),
    }
    if isinstance(model, EDSR):
        return {"arch": "edsr", "scale": int(model.scale), **spec}
    return {"arch": "mdsr", "scales": [int(s) for s in model.scales], **spec}


def from_spec(spec: dict, **kwargs) -> SRModel:
    """Build a model from :func:`model_spec` output; ``kwargs`` sets e.g. ``dtype``."""
    arch = spec.get("arch")
    common = dict(
        num_blocks=int(spec["num_blocks"]),
        num_features=int(spec["num_features"]),
        res_scale=float(spec.get("res_scale", 1.0)),
        **kwargs,
    )
    if arch == "edsr":
        return EDSR(scale=int(spec["scale"]), **common)
    if arch == "mdsr":
        return MDSR(scales=tuple(int(s) for s in spec["scales"]), **common)
    raise ValueError(f"unknown architecture {arch!r} in model spec (expected 'edsr' or 'mdsr')")


def fold_residual_scaling(model: SRModel, variables):
    """Fold the constant residual scale into each block's second conv (the paper's test-time trick).

    ``res_scale * conv2(y) == conv2'(y)`` with conv2's kernel and bias multiplied by ``res_scale``.

    Args:
      model: an EDSR or MDSR.
      variables: its variables (``{"params": ...}``).

    Returns:
      ``(model_with_res_scale_1, folded_variables)``, equal in output up to float rounding.
    """
    rs = float(model.res_scale)
    if rs == 1.0:
        return model, variables
    params = jax.tree_util.tree_map(lambda a: a, dict(variables["params"]))
    for name in list(params):
        if name.startswith("block_"):
            block = dict(params[name])
            block["conv2"] = {k: v * jnp.asarray(rs, v.dtype) for k, v in block["conv2"].items()}
            params[name] = block
    return model.clone(res_scale=1.0), {**variables, "params": params}
