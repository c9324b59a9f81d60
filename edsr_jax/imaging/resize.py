"""MATLAB-exact bicubic ``imresize`` in numpy: DIV2K's and the benchmarks' LR images were made with it.

PIL's and ``jax.image.resize``'s bicubic differ; the kernel, grid, boundary and pass order are in
``docs/protocol.md`` ("MATLAB bicubic"). Float64 throughout, bit-exact on uint8.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from edsr_jax.errors import UserError

# Keys' cubic convolution parameter used by MATLAB's 'bicubic'.
CUBIC_A = -0.5
# Support of the cubic kernel (taps within +-2 input pixels before stretching).
KERNEL_WIDTH = 4.0
BOUNDARIES = ("replicate", "mirror")


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = (CUBIC_A + 2) * ax3 - (CUBIC_A + 3) * ax2 + 1
    outer = CUBIC_A * ax3 - 5 * CUBIC_A * ax2 + 8 * CUBIC_A * ax - 4 * CUBIC_A
    return np.where(ax <= 1, inner, 0.0) + np.where((ax > 1) & (ax <= 2), outer, 0.0)


@functools.lru_cache(maxsize=256)
def contributions(in_len: int, out_len: int, scale: float, boundary: str) -> tuple[np.ndarray, np.ndarray]:
    """Read-only ``(indices, weights)``, each ``(out_len, taps)``, of one 1-D pass (rows sum to 1)."""
    if boundary not in BOUNDARIES:
        raise UserError(f"boundary must be one of {BOUNDARIES}, got {boundary!r}")
    antialias = scale < 1
    width = KERNEL_WIDTH / scale if antialias else KERNEL_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    dist = u[:, None] - idx
    weights = scale * cubic(scale * dist) if antialias else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    idx = idx.astype(np.int64) - 1  # 0-based
    if boundary == "replicate":
        idx = np.clip(idx, 0, in_len - 1)
    else:  # symmetric mirror: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
        period = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
        idx = period[np.mod(idx, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)  # MATLAB drops all-zero tap columns
    idx, weights = idx[:, keep], weights[:, keep]
    idx.setflags(write=False)
    weights.setflags(write=False)
    return idx, weights


def output_size(
    shape: tuple[int, int], scale: float | tuple[float, float] | None, output_shape: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """MATLAB's ``((H_out, W_out), (scale_h, scale_w))``; ``output_shape`` wins over ``scale``."""
    if output_shape is not None:
        out = tuple(int(s) for s in output_shape)
        if len(out) != 2 or min(out) < 1:
            raise UserError(f"output_shape must be two positive sizes (H, W), got {output_shape!r}")
        return out, (out[0] / shape[0], out[1] / shape[1])
    if scale is None:
        raise UserError("imresize needs a scale or an output_shape")
    scales = tuple(float(s) for s in (scale if isinstance(scale, (tuple, list)) else (scale, scale)))
    if len(scales) != 2 or min(scales) <= 0:
        raise UserError(f"scale must be positive (one value or (scale_h, scale_w)), got {scale!r}")
    out = tuple(int(math.ceil(n * s - 1e-9 * n * s)) for n, s in zip(shape, scales, strict=True))
    return out, scales


def _round_uint8(x: np.ndarray) -> np.ndarray:
    """Round half away from zero and saturate to uint8 (MATLAB's double -> uint8)."""
    return np.clip(np.floor(x + 0.5), 0, 255)


def _pass_order(scales: tuple[float, float]) -> tuple[int, int]:
    """MATLAB resizes the dimension with the smaller scale first (height on ties)."""
    return (0, 1) if scales[0] <= scales[1] else (1, 0)


def _check_image(image, name: str) -> None:
    if image.ndim not in (2, 3):
        raise UserError(f"{name} expects an HxW or HxWxC image, got shape {tuple(image.shape)}")
    if min(image.shape[:2]) < 1:
        raise UserError(f"{name} got an empty image of shape {tuple(image.shape)}")


def imresize(
    image: np.ndarray,
    scale: float | tuple[float, float] | None = None,
    *,
    boundary: str = "replicate",
    output_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """MATLAB ``imresize(image, scale, 'bicubic')`` of an HxW or HxWxC image, in its dtype.

    uint8 is rounded and clipped after each pass, as MATLAB does; float is not. ``scale`` is one
    factor or ``(scale_h, scale_w)``; ``boundary="mirror"`` reproduces the EDSR benchmark package's LR.

    Raises:
      UserError: a bad shape, scale or boundary, or an integer dtype other than uint8.
    """
    image = np.asarray(image)
    _check_image(image, "imresize")
    is_uint8 = image.dtype == np.uint8
    if not is_uint8 and not np.issubdtype(image.dtype, np.floating):
        raise UserError(f"imresize takes uint8 or float images, got dtype {image.dtype}")
    out_hw, scales = output_size(image.shape[:2], scale, output_shape)
    x = image.astype(np.float64)
    for axis in _pass_order(scales):
        idx, w = contributions(image.shape[axis], out_hw[axis], scales[axis], boundary)
        x = _resize_axis_np(x, idx, w, axis)
        if is_uint8:
            x = _round_uint8(x)
    return x.astype(image.dtype)


def _resize_axis_np(x: np.ndarray, idx: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    """One 1-D pass along ``axis`` (0 = H, 1 = W), taps summed in order."""
    shape = [1] * x.ndim
    shape[axis] = w.shape[0]
    out = None
    for t in range(w.shape[1]):
        term = np.take(x, idx[:, t], axis=axis) * w[:, t].reshape(shape)
        out = term if out is None else out + term
    return out


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that H and W are multiples of ``scale`` (top-left kept)."""
    h, w = image.shape[0], image.shape[1]
    return image[: h - h % scale, : w - w % scale]


def downscale(
    image: np.ndarray, scale: int, *, boundary: str = "replicate", crop: bool = True, name: str = "image"
) -> np.ndarray:
    """The benchmark LR of an HR image: ``imresize(modcrop(hr, s), 1/s)`` (``crop=False`` skips the modcrop).

    Raises:
      UserError: a scale that is not a positive integer, or an image smaller than the scale.
    """
    if int(scale) != scale or scale < 1:
        raise UserError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    h, w = image.shape[:2]
    if min(h, w) < scale:
        raise UserError(f"{name} ({h}x{w}) is smaller than the scale {scale}")
    if crop:
        image = modcrop(image, scale)
    return imresize(image, 1.0 / scale, boundary=boundary)
