"""MATLAB-exact bicubic resize (edsr_jax.imaging.resize): bit-exact against real MATLAB LR files,
upscaling sanity, MATLAB's output sizes."""

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from edsr_jax.errors import UserError
from edsr_jax.imaging import resize

NAMES = ("baby", "bird", "butterfly", "head", "woman")
# LR folder -> boundary that reproduces it (REFERENCE section 5).
LR_FOLDERS = {"LR_bicubic": "replicate", "LR_bicubic_edsrpkg": "mirror"}
FEW = settings(max_examples=15, deadline=None)
SCALES = [1 / 2, 1 / 3, 1 / 4, 2, 3, 4]


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.mark.parametrize("folder", sorted(LR_FOLDERS))
@pytest.mark.parametrize("scale", (2, 3, 4))
def test_downscale_is_bit_exact_with_every_set5_lr_file(set5_dir, folder, scale):
    for name in NAMES:
        hr = _rgb(os.path.join(set5_dir, "HR", f"{name}.png"))
        expected = _rgb(os.path.join(set5_dir, folder, f"X{scale}", f"{name}x{scale}.png"))
        got = resize.imresize(resize.modcrop(hr, scale), 1 / scale, boundary=LR_FOLDERS[folder])
        assert got.dtype == np.uint8
        assert got.shape == expected.shape, name
        mismatched = int((got != expected).sum())
        assert mismatched == 0, f"{name} x{scale} {folder}: {mismatched} pixels differ"
        np.testing.assert_array_equal(resize.downscale(hr, scale, boundary=LR_FOLDERS[folder]), got)


def test_boundaries_differ_only_near_the_border(set5_dir):
    hr = _rgb(os.path.join(set5_dir, "HR", "bird.png"))
    a = resize.downscale(hr, 3, boundary="replicate")
    b = resize.downscale(hr, 3, boundary="mirror")
    assert (a != b).any()
    np.testing.assert_array_equal(a[3:-3, 3:-3], b[3:-3, 3:-3])


@pytest.mark.parametrize("scale", (2, 3, 4, 0.5, 1 / 3))
def test_constant_image_stays_constant(scale):
    x = np.full((13, 17, 3), 77, np.uint8)
    y = resize.imresize(x, scale)
    assert y.shape == (int(np.ceil(13 * scale - 1e-9)), int(np.ceil(17 * scale - 1e-9)), 3)
    assert (y == 77).all()
    yf = resize.imresize(x.astype(np.float64) + 0.25, scale)
    np.testing.assert_allclose(yf, 77.25, atol=1e-12)


def test_upscaling_preserves_a_linear_ramp_in_the_interior():
    # Keys' cubic reproduces linear functions; the interior of a x2 upscale samples the ramp at
    # u = x / 2 + 0.25 (1-based), i.e. 0-based position (x_out + 0.5) / 2 - 0.5.
    w = 20
    ramp = np.tile(3.0 * np.arange(w, dtype=np.float64), (4, 1))
    up = resize.imresize(ramp, 2)
    pos = (np.arange(2 * w) + 0.5) / 2 - 0.5
    np.testing.assert_allclose(up[:, 4:-4], np.tile(3.0 * pos, (8, 1))[:, 4:-4], atol=1e-12)
    # Height first then width, with rounding after each pass on uint8.
    ramp8 = np.tile(np.arange(0, 200, 10, dtype=np.uint8), (6, 1))
    up8 = resize.imresize(ramp8, 2)
    expected = np.floor(np.tile(10.0 * pos, (12, 1)) + 0.5)
    np.testing.assert_array_equal(up8[:, 4:-4], expected[:, 4:-4])


def test_output_size_is_matlab_ceil_and_output_shape_works():
    x = np.zeros((255, 100), np.uint8)
    assert resize.imresize(x, 1 / 3).shape == (85, 34)
    assert resize.imresize(x, output_shape=(50, 60)).shape == (50, 60)
    assert resize.downscale(np.zeros((101, 103, 3), np.uint8), 4).shape == (25, 25, 3)
    assert resize.downscale(np.zeros((101, 103, 3), np.uint8), 4, crop=False).shape == (26, 26, 3)


def test_contribution_weights_are_normalised_and_in_range():
    for in_len, out_len, scale in ((10, 5, 0.5), (30, 10, 1 / 3), (7, 28, 4.0)):
        for boundary in resize.BOUNDARIES:
            idx, w = resize.contributions(in_len, out_len, scale, boundary)
            np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
            assert idx.min() >= 0 and idx.max() < in_len


def test_bad_arguments_raise_user_errors_with_the_value():
    with pytest.raises(UserError, match="'wrap'"):
        resize.imresize(np.zeros((4, 4), np.uint8), 0.5, boundary="wrap")
    with pytest.raises(UserError, match="int16"):
        resize.imresize(np.zeros((4, 4), np.int16), 0.5)
    with pytest.raises(UserError, match="-2"):
        resize.imresize(np.zeros((4, 4), np.uint8), -2)
    with pytest.raises(UserError, match="shape"):
        resize.imresize(np.zeros((2, 2, 2, 2), np.uint8), 2)


def test_downscale_names_an_image_smaller_than_the_scale_and_rejects_bad_scales():
    with pytest.raises(UserError, match=r"HR image a\.png \(1x5\) is smaller than the scale 2"):
        resize.downscale(np.zeros((1, 5, 3), np.uint8), 2, name="HR image a.png")
    for scale in (0, 1.5, -3):
        with pytest.raises(UserError, match="positive integer"):
            resize.downscale(np.zeros((8, 8, 3), np.uint8), scale)


# --- properties -----------------------------------------------------------------------------------


@FEW
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    scale=st.sampled_from(SCALES),
    channels=st.sampled_from([None, 1, 3]),
)
def test_imresize_output_shape_is_matlabs_ceil(h, w, scale, channels):
    shape = (h, w) if channels is None else (h, w, channels)
    x = np.zeros(shape, np.uint8)
    out = resize.imresize(x, scale)
    expected = (math.ceil(h * scale - 1e-9 * h * scale), math.ceil(w * scale - 1e-9 * w * scale))
    assert out.shape == expected + shape[2:] and out.dtype == np.uint8
    assert min(out.shape[:2]) >= 1


@FEW
@given(h=st.integers(1, 9), w=st.integers(1, 9), scale=st.sampled_from([2, 3, 4]))
def test_downscale_then_shape_undoes_upscale_shape(h, w, scale):
    x = np.zeros((h * scale, w * scale, 3), np.uint8)
    assert resize.imresize(x, 1 / scale).shape == (h, w, 3)
    assert resize.imresize(resize.imresize(x, 1 / scale), scale).shape == x.shape
