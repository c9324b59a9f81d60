"""The one convolution every model layer uses: :class:`Conv` and its function ``conv2d``.

Parameters and output are ``flax.linen.Conv``'s (HWIO kernel, bias), initialised like PyTorch's
``nn.Conv2d``. On CPU the backward pass computes the same gradients in forms XLA's CPU backend runs
faster (RESULTS.md "Model speed"); other platforms take the standard one. Reverse mode only.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Dtype = Any

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# Kernel gradients of convs with at most this many output channels use the shifted-g GEMM on CPU.
SMALL_OUT_CHANNELS = 8


def _plain_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 SAME convolution (odd kernel sizes)."""
    p = kernel.shape[0] // 2
    return lax.conv_general_dilated(x, kernel, (1, 1), ((p, p), (p, p)), dimension_numbers=_DIMENSION_NUMBERS)


@jax.custom_vjp
def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``conv(x, kernel) + bias``: NHWC, HWIO (odd, square), stride 1, SAME; one dtype for all three."""
    return _plain_conv(x, kernel) + bias


def _fwd(x, kernel, bias):
    return conv2d(x, kernel, bias), (x, kernel)


def _input_grad(kernel, g, x_shape_dtype):
    return jax.linear_transpose(lambda a: _plain_conv(a, kernel), x_shape_dtype)(g)[0]


def _kernel_grad_standard(x, kernel, g):
    return jax.linear_transpose(lambda k: _plain_conv(x, k), kernel)(g)[0]


def _bias_grad_standard(g):
    return jnp.sum(g, axis=(0, 1, 2))


def _rows(a: jax.Array) -> jax.Array:
    """[N, H, W, C] -> [N*H*W, C] (a free reshape of a row-major array)."""
    return a.reshape(-1, a.shape[-1])


def _bias_grad_cpu(g):
    """Sum over N, H, W as ``ones @ g``: a GEMV instead of XLA CPU's slower reduce-window."""
    ones = jnp.ones((g.shape[0] * g.shape[1] * g.shape[2],), g.dtype)
    return lax.dot_general(
        ones, _rows(g), (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32
    ).astype(g.dtype)


def _kernel_grad_shifted_g(x, kernel, g):
    """The kernel gradient as one GEMM of ``x``'s rows with the k*k shifted copies of ``g`` (few channels)."""
    k = kernel.shape[0]
    p = k // 2
    _, h, w, cin = x.shape
    cout = g.shape[-1]
    gp = jnp.pad(g, ((0, 0), (p, p), (p, p), (0, 0)))
    shifted = jnp.concatenate(
        [gp[:, 2 * p - i : 2 * p - i + h, 2 * p - j : 2 * p - j + w, :] for i in range(k) for j in range(k)],
        axis=-1,
    )
    dwt = lax.dot_general(
        _rows(x), _rows(shifted), (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )  # [Cin, k*k*Cout]
    return dwt.reshape(cin, k, k, cout).transpose(1, 2, 0, 3).astype(kernel.dtype)


def kernel_grad_strips(batch: int) -> int:
    """Horizontal strips per image that make ``batch * strips`` a multiple of 8 (1 if it is)."""
    return 8 // math.gcd(batch, 8)


def _kernel_grad_in_strips(x, kernel, g, strips: int):
    """The standard kernel gradient with each image cut into ``strips`` horizontal strips (with halo).

    XLA CPU's backward-filter conv is slower when the batch is not a multiple of 8 (RESULTS.md
    "Model speed"); strips turn the batch into one.
    """
    k = kernel.shape[0]
    p = k // 2
    n, h, w, cin = x.shape
    rows = -(-h // strips)  # rows per strip
    extra = rows * strips - h
    xp = jnp.pad(x, ((0, 0), (p, p + extra), (p, p), (0, 0)))
    gp = jnp.pad(g, ((0, 0), (0, extra), (0, 0), (0, 0))) if extra else g
    xs = jnp.stack([xp[:, i * rows : i * rows + rows + 2 * p] for i in range(strips)], axis=1)
    xs = xs.reshape(n * strips, rows + 2 * p, w + 2 * p, cin)
    gs = gp.reshape(n * strips, rows, w, g.shape[-1])

    def valid_conv(kk):
        return lax.conv_general_dilated(xs, kk, (1, 1), "VALID", dimension_numbers=_DIMENSION_NUMBERS)

    return jax.linear_transpose(valid_conv, kernel)(gs)[0]


def _param_grads_cpu(x, kernel, g):
    strips = kernel_grad_strips(x.shape[0])
    if kernel.shape[-1] <= SMALL_OUT_CHANNELS:
        dk = _kernel_grad_shifted_g(x, kernel, g)
    elif strips > 1:
        dk = _kernel_grad_in_strips(x, kernel, g, strips)
    else:
        dk = _kernel_grad_standard(x, kernel, g)
    return dk, _bias_grad_cpu(g)


def _param_grads_default(x, kernel, g):
    return _kernel_grad_standard(x, kernel, g), _bias_grad_standard(g)


def _bwd(residuals, g):
    x, kernel = residuals
    dx = _input_grad(kernel, g, jax.ShapeDtypeStruct(x.shape, x.dtype))
    dk, db = lax.platform_dependent(x, kernel, g, cpu=_param_grads_cpu, default=_param_grads_default)
    return dx, dk, db


conv2d.defvjp(_fwd, _bwd)


# --- the layer ------------------------------------------------------------------------------------


def pytorch_bound(fan_in: int) -> float:
    """PyTorch's ``nn.Conv2d`` init bound, 1/sqrt(fan_in): kernel and bias ~ U(+-bound)."""
    return 1.0 / math.sqrt(fan_in)


def _pytorch_uniform(fan_in: int):
    bound = pytorch_bound(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Conv(nn.Module):
    """A stride-1, SAME-padded conv with bias: ``kernel`` (HWIO), ``bias``, PyTorch init, :func:`conv2d`."""

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
        fan_in = self.in_features * k * k
        kernel = self.param(
            "kernel", _pytorch_uniform(fan_in), (k, k, self.in_features, self.features), self.param_dtype
        )
        bias = self.param("bias", _pytorch_uniform(fan_in), (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return conv2d(x, kernel, bias)
