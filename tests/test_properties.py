"""Property tests (hypothesis) for the image operations: resize shapes, self-ensemble inverses,
PSNR/SSIM symmetry and bounds, and tiling that stitches a per-pixel function back exactly."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edsr_jax import image, inference, metrics

FEW = settings(max_examples=15, deadline=None)
SCALES = [1 / 2, 1 / 3, 1 / 4, 2, 3, 4]


@st.composite
def uint8_images(draw, min_side=1, max_side=13, channels=3):
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


@FEW
@given(h=st.integers(1, 40), w=st.integers(1, 40), scale=st.sampled_from(SCALES),
       channels=st.sampled_from([None, 1, 3]))  # fmt: skip
def test_imresize_output_shape_is_matlabs_ceil(h, w, scale, channels):
    shape = (h, w) if channels is None else (h, w, channels)
    x = np.zeros(shape, np.uint8)
    out = image.imresize(x, scale)
    expected = (math.ceil(h * scale - 1e-9 * h * scale), math.ceil(w * scale - 1e-9 * w * scale))
    assert out.shape == expected + shape[2:] and out.dtype == np.uint8
    assert min(out.shape[:2]) >= 1


@FEW
@given(h=st.integers(1, 9), w=st.integers(1, 9), scale=st.sampled_from([2, 3, 4]))
def test_downscale_then_shape_undoes_upscale_shape(h, w, scale):
    x = np.zeros((h * scale, w * scale, 3), np.uint8)
    assert image.imresize(x, 1 / scale).shape == (h, w, 3)
    assert image.imresize(image.imresize(x, 1 / scale), scale).shape == x.shape


@FEW
@given(x=uint8_images(min_side=1, max_side=7), k=st.integers(0, 7))
def test_undo_dihedral_inverts_dihedral_also_for_non_square(x, k):
    batch = x[None]
    back = np.asarray(inference.undo_dihedral(inference.dihedral(batch, k), k))
    np.testing.assert_array_equal(back, batch)
    transformed = np.asarray(inference.dihedral(batch, k))
    assert sorted(transformed.shape[1:3]) == sorted(batch.shape[1:3])


def test_the_eight_dihedral_transforms_are_distinct():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 3, 4, 2)
    seen = {
        np.asarray(inference.dihedral(x, k)).tobytes() + bytes(np.shape(inference.dihedral(x, k)))
        for k in range(8)
    }
    assert len(seen) == 8


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


@FEW
@given(x=uint8_images(min_side=1, max_side=30), scale=st.sampled_from([1, 2, 3]),
       tile=st.integers(6, 16), overlap=st.integers(0, 2))  # fmt: skip
def test_tiling_a_per_pixel_function_returns_the_whole_image_result(x, scale, tile, overlap):
    def nearest(t):  # per-pixel: no context, so every tile's interior is exact
        t = np.asarray(t)
        return np.repeat(np.repeat(t, scale, axis=1), scale, axis=2).astype(np.float32)

    batch = x[None].astype(np.float32)
    out = np.asarray(inference.tiled(nearest, batch, scale=scale, tile=tile, overlap=overlap))
    np.testing.assert_array_equal(out, nearest(batch))
