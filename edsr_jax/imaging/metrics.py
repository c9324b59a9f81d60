"""PSNR and SSIM under the published protocol (``docs/protocol.md`` "Evaluation protocol").

SSIM equals scikit-image's ``structural_similarity`` with Gaussian weights, sigma 1.5, no sample
covariance. Inputs are ``(H, W, C)`` or ``(N, H, W, C)``; numpy in float64, JAX in float32+ (jittable).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edsr_jax.errors import UserError

# Peak value of the 8-bit range every metric works in.
PIXEL_MAX = 255.0
# BT.601 luma from 0..255 RGB (MATLAB rgb2ycbcr): offset and per-channel coefficients (/255).
Y_OFFSET = 16.0
Y_COEFFS = (65.481, 128.553, 24.966)
# SSIM constants (Wang et al. 2004) for the 0..255 range.
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_WINDOW = 11  # Gaussian window size
SSIM_SIGMA = 1.5  # Gaussian window standard deviation
# Centre used to keep SSIM's second moments accurate in float32 (statistics are shift-invariant).
_SSIM_CENTER = 128.0


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How a dataset is scored: luma or RGB, and ``scale + extra_shave`` border pixels removed."""

    name: str
    y_only: bool
    extra_shave: int

    def shave(self, scale: int) -> int:
        """Pixels removed at each border for ``scale``."""
        return int(scale) + self.extra_shave

    def describe(self) -> dict:
        """A JSON-able description (written with evaluation results)."""
        return {
            "name": self.name,
            "channel": "Y (BT.601, float, not rounded)" if self.y_only else "RGB",
            "shave": f"scale + {self.extra_shave}" if self.extra_shave else "scale",
            "quantize": "clip to [0, 255], round half away from zero",
            "ssim": "Gaussian 11x11, sigma 1.5, K1 0.01, K2 0.03, valid region mean",
        }


BENCHMARK = Protocol("benchmark", y_only=True, extra_shave=0)
DIV2K = Protocol("div2k", y_only=False, extra_shave=6)
PROTOCOLS = {p.name: p for p in (BENCHMARK, DIV2K)}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (``"benchmark"`` or ``"div2k"``); UserError for any other."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise UserError(f"unknown protocol {name!r} (expected one of {sorted(PROTOCOLS)})") from None


def protocol_for_dataset(dataset: str) -> Protocol:
    """DIV2K (any name starting with "div2k") is scored on RGB, everything else as a benchmark."""
    return DIV2K if dataset.lower().startswith("div2k") else BENCHMARK


def _xp(x):
    """jax.numpy for JAX arrays (and tracers), numpy otherwise."""
    if isinstance(x, np.ndarray) or np.isscalar(x):
        return np, np.float64
    import jax.numpy as jnp

    wide = jnp.issubdtype(x.dtype, jnp.floating)
    return jnp, jnp.promote_types(jnp.float32, x.dtype) if wide else jnp.float32


def quantize(x):
    """Clip to [0, 255] and round half away from zero (values stay float)."""
    xp, dtype = _xp(x)
    x = xp.asarray(x).astype(dtype)
    return xp.floor(xp.clip(x, 0, PIXEL_MAX) + 0.5)


def quantize_uint8(x) -> np.ndarray:
    """:func:`quantize` as a uint8 numpy array: what is scored, shown and written as an image."""
    return np.asarray(quantize(np.asarray(x, np.float64)), np.uint8)


def rgb_to_y(x):
    """BT.601 luma of 0..255 RGB (last axis 3) -> last axis 1, in float (no rounding)."""
    xp, dtype = _xp(x)
    x = xp.asarray(x).astype(dtype)
    if x.shape[-1] != 3:
        raise UserError(f"rgb_to_y expects 3 channels in the last axis, got shape {tuple(x.shape)}")
    y = Y_OFFSET + (Y_COEFFS[0] * x[..., 0] + Y_COEFFS[1] * x[..., 1] + Y_COEFFS[2] * x[..., 2]) / PIXEL_MAX
    return y[..., None]


def _prepare(sr, hr, scale: int, y_only: bool, shave: int | None, name: str):
    """Quantise, shave and (for y_only) convert both images; returns float arrays (..., h, w, c)."""
    if sr.shape != hr.shape:
        raise UserError(f"{name}: SR shape {tuple(sr.shape)} differs from HR shape {tuple(hr.shape)}")
    if sr.ndim not in (3, 4):
        raise UserError(f"{name} expects (H, W, C) or (N, H, W, C) images, got shape {tuple(sr.shape)}")
    shave = int(scale) if shave is None else int(shave)
    h, w = sr.shape[-3], sr.shape[-2]
    if shave < 0 or 2 * shave >= min(h, w):
        raise UserError(f"{name}: cannot shave {shave} pixels from a {h}x{w} image")
    xp, _ = _xp(sr if not isinstance(sr, np.ndarray) else hr)
    sr, hr = quantize(xp.asarray(sr)), quantize(xp.asarray(hr))
    if shave:
        sr = sr[..., shave : h - shave, shave : w - shave, :]
        hr = hr[..., shave : h - shave, shave : w - shave, :]
    if y_only:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    return xp, sr, hr


def psnr(sr, hr, *, scale: int, y_only: bool = True, shave: int | None = None):
    """PSNR in dB per image (``inf`` when identical), after quantising, shaving (default ``scale``) and
    (``y_only``) taking luma; ``hr`` already cropped to the SR size. UserError on a bad shape or shave.
    """
    xp, sr, hr = _prepare(sr, hr, scale, y_only, shave, "psnr")
    mse = xp.mean((sr - hr) ** 2, axis=(-3, -2, -1))
    with np.errstate(divide="ignore"):
        return 10.0 * xp.log10(PIXEL_MAX**2 / mse)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(xp, x, g):
    """Separable 'valid' correlation of (..., H, W, C) with ``g`` along H and W (shifted sums)."""
    k = len(g)
    h, w = x.shape[-3], x.shape[-2]
    rows = sum(float(g[i]) * x[..., i : h - k + 1 + i, :, :] for i in range(k))
    return sum(float(g[i]) * rows[..., :, i : w - k + 1 + i, :] for i in range(k))


def ssim(sr, hr, *, scale: int, y_only: bool = True, shave: int | None = None):
    """SSIM per image (11x11 Gaussian, sigma 1.5, valid-region mean; RGB: channel mean), as :func:`psnr`."""
    xp, x, y = _prepare(sr, hr, scale, y_only, shave, "ssim")
    if min(x.shape[-3], x.shape[-2]) < SSIM_WINDOW:
        raise UserError(
            f"ssim needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after the shave, got "
            f"{x.shape[-3]}x{x.shape[-2]}"
        )
    g = gaussian_window()
    c1 = (SSIM_K1 * PIXEL_MAX) ** 2
    c2 = (SSIM_K2 * PIXEL_MAX) ** 2
    x, y = x - _SSIM_CENTER, y - _SSIM_CENTER
    mu_x, mu_y = _filter_valid(xp, x, g), _filter_valid(xp, y, g)
    var_x = _filter_valid(xp, x * x, g) - mu_x * mu_x
    var_y = _filter_valid(xp, y * y, g) - mu_y * mu_y
    cov = _filter_valid(xp, x * y, g) - mu_x * mu_y
    mu_x, mu_y = mu_x + _SSIM_CENTER, mu_y + _SSIM_CENTER
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return xp.mean(num / den, axis=(-3, -2, -1))


def evaluate_pair(sr, hr, *, scale: int, protocol: Protocol = BENCHMARK) -> tuple[float, float]:
    """``(psnr, ssim)`` of one image pair under ``protocol``, as Python floats."""
    kwargs = dict(scale=scale, y_only=protocol.y_only, shave=protocol.shave(scale))
    return float(psnr(sr, hr, **kwargs)), float(ssim(sr, hr, **kwargs))
