"""Benchmark sets in the EDSR layout (edsr_jax.data.benchmarks): real and generated LR files, HR
crops, grayscale, and missing or empty sets."""

import os

import numpy as np
import pytest
from PIL import Image
from support.images import copy_hr

from edsr_jax.data import benchmarks
from edsr_jax.errors import UserError
from edsr_jax.imaging import files


def test_missing_lr_files_are_generated_matlab_exactly(set5_dir, tmp_path):
    copy_hr(set5_dir, tmp_path / "Mine")
    samples = benchmarks.load_benchmark(str(tmp_path), "Mine", 3)
    assert [s.name for s in samples] == ["bird", "head"]
    for s in samples:
        real = files.read_image(os.path.join(set5_dir, "LR_bicubic", "X3", f"{s.name}x3.png"))
        assert s.lr_generated
        np.testing.assert_array_equal(s.lr, real)
        assert s.hr.shape == (real.shape[0] * 3, real.shape[1] * 3, 3)


def test_existing_lr_files_are_used_and_hr_is_cropped(set5_dir):
    samples = benchmarks.load_benchmark(os.path.dirname(set5_dir), "Set5", 3, boundary="mirror")
    woman = samples[-1]
    assert woman.name == "woman" and not woman.lr_generated
    assert woman.lr.shape == (114, 76, 3) and woman.hr.shape == (342, 228, 3)  # HR is 344x228


def test_grayscale_images_are_replicated(tmp_path):
    os.makedirs(tmp_path / "Gray" / "HR")
    gray = (np.arange(24 * 18) % 251).astype(np.uint8).reshape(24, 18)
    Image.fromarray(gray, "L").save(tmp_path / "Gray" / "HR" / "g.png")
    (s,) = benchmarks.load_benchmark(str(tmp_path), "Gray", 2)
    assert s.hr.shape == (24, 18, 3) and s.lr.shape == (12, 9, 3)
    np.testing.assert_array_equal(s.hr[..., 0], gray)
    np.testing.assert_array_equal(s.hr[..., 2], gray)


def test_missing_or_empty_sets_name_the_folder(tmp_path):
    os.makedirs(tmp_path / "Empty" / "HR")
    os.makedirs(tmp_path / "NoHR")
    with pytest.raises(UserError, match=r"'Nope' not found: .*Nope \(found: Empty, NoHR\)"):
        benchmarks.load_benchmark(str(tmp_path), "Nope", 2)
    with pytest.raises(UserError, match=r"Empty.HR"):
        benchmarks.load_benchmark(str(tmp_path), "Empty", 2)
    with pytest.raises(UserError, match=r"'NoHR' has no HR folder"):
        benchmarks.load_benchmark(str(tmp_path), "NoHR", 2)


def test_an_lr_file_too_large_for_its_hr_is_refused(tmp_path):
    os.makedirs(tmp_path / "Odd" / "HR")
    os.makedirs(tmp_path / "Odd" / "LR_bicubic" / "X2")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "Odd" / "HR" / "a.png")
    Image.fromarray(np.zeros((6, 5, 3), np.uint8)).save(tmp_path / "Odd" / "LR_bicubic" / "X2" / "ax2.png")
    message = r"a\.png: LR image \S*ax2\.png \(5x6\) times scale 2 is larger than its HR image 10x10"
    with pytest.raises(UserError, match=message):
        benchmarks.load_benchmark(str(tmp_path), "Odd", 2)
