"""PSNR/SSIM (edsr_jax.imaging.metrics): hand cases, scikit-image's SSIM, an independent float64
reference, JAX float32 == numpy, and properties (symmetry, bounds)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import correlate2d
from skimage.metrics import structural_similarity
from support.images import uint8_images

from edsr_jax.errors import UserError
from edsr_jax.imaging import metrics

FEW = settings(max_examples=15, deadline=None)


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
    q = metrics.quantize_uint8(x)
    assert q.dtype == np.uint8 and q.tolist() == [0, 10, 11, 12, 255, 255]
    assert metrics.quantize_uint8(jnp.asarray([[0.49, 254.6]], jnp.float32)).tolist() == [[0, 255]]


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
    assert metrics.get_protocol("div2k") is metrics.DIV2K
    with pytest.raises(UserError, match="'set5'"):
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
    expected_y = structural_similarity(
        ys, yh, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert metrics.ssim(sr, hr, scale=s) == pytest.approx(expected_y, abs=1e-10)
    assert metrics.ssim(sr, hr, scale=s) == pytest.approx(_ssim_reference(ys, yh), abs=1e-10)
    q = lambda z: np.clip(np.floor(z + 0.5), 0, 255)[s:-s, s:-s]
    expected_rgb = structural_similarity(
        q(sr),
        q(hr.astype(np.float64)),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=-1,
    )
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


def test_bad_inputs_raise_user_errors_with_the_shapes():
    a = np.zeros((20, 20, 3))
    with pytest.raises(UserError, match=r"\(20, 21, 3\)"):
        metrics.psnr(a, np.zeros((20, 21, 3)), scale=2)
    with pytest.raises(UserError, match="shave 10"):
        metrics.psnr(a, a, scale=10)
    with pytest.raises(UserError, match="11x11"):
        metrics.ssim(a, a, scale=5)


@FEW
@given(a=uint8_images(min_side=15, max_side=18), seed=st.integers(0, 2**16), y_only=st.booleans())
def test_psnr_and_ssim_are_symmetric_and_bounded(a, seed, y_only):
    b = np.random.default_rng(seed).integers(0, 256, a.shape, dtype=np.uint8)
    if np.array_equal(a, b):
        b = 255 - a
    kw = dict(scale=2, y_only=y_only)
    p_ab, p_ba = float(metrics.psnr(a, b, **kw)), float(metrics.psnr(b, a, **kw))
    assert p_ab == pytest.approx(p_ba) and math.isfinite(p_ab) and p_ab >= 0
    assert float(metrics.psnr(a, a, **kw)) == math.inf
    s_ab, s_ba = float(metrics.ssim(a, b, **kw)), float(metrics.ssim(b, a, **kw))
    assert s_ab == pytest.approx(s_ba, abs=1e-9) and -1 <= s_ab <= 1
    assert float(metrics.ssim(a, a, **kw)) == pytest.approx(1.0)
