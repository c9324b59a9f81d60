"""PSNR/SSIM: hand cases, scikit-image's SSIM, an independent float64 reference, JAX float32 == numpy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import correlate2d
from skimage.metrics import structural_similarity

from edsr_jax import metrics


def _pair(seed=0, shape=(40, 52, 3)):
    """A smooth image and a noisy, slightly out-of-range copy of it (float, like a network output)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-3], : shape[-2]]
    base = 128 + 90 * np.sin(yy / 7.0)[..., None] * np.cos(xx / 5.0)[..., None] * np.array([1.0, 0.8, 0.6])
    hr = np.clip(np.round(base + rng.normal(0, 10, shape)), 0, 255).astype(np.uint8)
    sr = hr + rng.normal(0, 6, shape) + 3.0
    return sr, hr


def _ssim_reference(a, b):
    """Wang et al. SSIM on one float64 channel: 2-D Gaussian window, 'valid' positions."""
    x = np.arange(11) - 5.0
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    f = lambda z: correlate2d(z, g, mode="valid")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = f(a), f(b)
    var_a, var_b, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def _y(img):
    q = np.clip(np.floor(np.asarray(img, np.float64) + 0.5), 0, 255)
    return 16 + (65.481 * q[..., 0] + 128.553 * q[..., 1] + 24.966 * q[..., 2]) / 255


def test_quantize_clips_and_rounds_half_away_from_zero():
    x = np.array([-5.0, 10.4, 10.5, 11.5, 254.5, 300.0])
    np.testing.assert_array_equal(metrics.quantize(x), [0, 10, 11, 12, 255, 255])


def test_psnr_hand_cases():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr.astype(np.float64) + 1.0
    # RGB, every pixel off by 1: MSE 1.
    assert metrics.psnr(sr, hr, scale=2, y_only=False) == pytest.approx(20 * math.log10(255), abs=1e-12)
    # Y: the luma difference is (65.481 + 128.553 + 24.966) / 255 = 219 / 255.
    assert metrics.psnr(sr, hr, scale=2) == pytest.approx(20 * math.log10(255 / (219 / 255)), abs=1e-9)
    assert metrics.psnr(hr, hr, scale=2) == math.inf
    # Errors in the shaved border do not count; 0.4 rounds away.
    noisy = hr.astype(np.float64) + 0.4
    noisy[:3] = 0
    noisy[:, -3:] = 255
    assert metrics.psnr(noisy, hr, scale=3) == math.inf
    assert metrics.psnr(noisy, hr, scale=2) < 30


def test_protocols_pick_channels_and_shave():
    assert metrics.protocol_for_dataset("Set14") is metrics.BENCHMARK
    assert metrics.protocol_for_dataset("DIV2K_valid") is metrics.DIV2K
    assert metrics.DIV2K.shave(4) == 10 and metrics.BENCHMARK.shave(4) == 4
    sr, hr = _pair()
    p, s = metrics.evaluate_pair(sr, hr, scale=2, protocol=metrics.DIV2K)
    assert p == pytest.approx(float(metrics.psnr(sr, hr, scale=2, y_only=False, shave=8)))
    assert s == pytest.approx(float(metrics.ssim(sr, hr, scale=2, y_only=False, shave=8)))
    with pytest.raises(ValueError, match="'set5'"):
        metrics.get_protocol("set5")


def test_psnr_and_ssim_on_batches_equal_per_image_values():
    pairs = [_pair(seed) for seed in range(3)]
    sr = np.stack([p[0] for p in pairs])
    hr = np.stack([p[1] for p in pairs])
    for fn in (metrics.psnr, metrics.ssim):
        batch = fn(sr, hr, scale=3)
        assert batch.shape == (3,)
        np.testing.assert_allclose(batch, [fn(s, h, scale=3) for s, h in pairs], rtol=1e-12)


def test_ssim_matches_scikit_image_and_a_float64_reference():
    sr, hr = _pair()
    s = 2
    ys, yh = _y(sr)[s:-s, s:-s], _y(hr)[s:-s, s:-s]
    expected_y = structural_similarity(ys, yh, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255)
    assert metrics.ssim(sr, hr, scale=s) == pytest.approx(expected_y, abs=1e-10)
    assert metrics.ssim(sr, hr, scale=s) == pytest.approx(_ssim_reference(ys, yh), abs=1e-10)
    q = lambda z: np.clip(np.floor(z + 0.5), 0, 255)[s:-s, s:-s]
    expected_rgb = structural_similarity(q(sr), q(hr.astype(np.float64)), gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=255, channel_axis=-1)
    assert metrics.ssim(sr, hr, scale=s, y_only=False) == pytest.approx(expected_rgb, abs=1e-10)
    assert metrics.ssim(hr, hr, scale=s) == pytest.approx(1.0, abs=1e-12)
    assert 0.5 < expected_y < 0.99  # the test pair is neither trivial nor hopeless


def test_jitted_float32_metrics_match_float64_numpy():
    sr, hr = _pair(shape=(2, 48, 40, 3))
    fn = jax.jit(lambda a, b: (metrics.psnr(a, b, scale=4), metrics.ssim(a, b, scale=4)))
    p32, s32 = fn(jnp.asarray(sr, jnp.float32), jnp.asarray(hr))
    assert p32.dtype == jnp.float32 and p32.shape == (2,)
    np.testing.assert_allclose(np.asarray(p32), metrics.psnr(sr.astype(np.float32), hr, scale=4), atol=1e-4)
    np.testing.assert_allclose(np.asarray(s32), metrics.ssim(sr.astype(np.float32), hr, scale=4), atol=1e-5)
    # bf16 input is computed in float32, not bf16.
    arg = jax.ShapeDtypeStruct(hr.shape, jnp.bfloat16)
    assert jax.eval_shape(lambda a: metrics.ssim(a, a, scale=4), arg).dtype == jnp.float32


def test_bad_inputs_raise_with_the_shapes():
    a = np.zeros((20, 20, 3))
    with pytest.raises(ValueError, match=r"\(20, 21, 3\)"):
        metrics.psnr(a, np.zeros((20, 21, 3)), scale=2)
    with pytest.raises(ValueError, match="shave 10"):
        metrics.psnr(a, a, scale=10)
    with pytest.raises(ValueError, match="11x11"):
        metrics.ssim(a, a, scale=5)
