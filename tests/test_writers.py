"""Training's summaries (edsr_jax.writers): the console fallback without clu and TensorFlow, the
parameter table, the validation image strips."""

import os
import sys

import numpy as np
import pytest

from edsr_jax import writers
from edsr_jax.imaging import resize


def test_training_writers_fall_back_without_clu_and_tensorflow(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "clu", None)  # `import clu...` raises ImportError
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setattr(writers, "_WARNED_NO_CLU", [])
    with pytest.warns(UserWarning, match="TensorBoard summaries are off"):
        writer, report = writers.create_writer(str(tmp_path), True, 10, 1)
    assert isinstance(writer, writers.ConsoleWriter)
    writer.write_scalars(1, {"loss": 1.0})
    writer.write_hparams({"a": 1})
    report(1)
    writer.flush()
    assert os.listdir(tmp_path) == []  # console only
    assert "total 3" in writers.parameter_overview({"a": np.zeros((3,), np.float32)})


def test_other_processes_write_nothing(tmp_path):
    writer, report = writers.create_writer(str(tmp_path), False, 10, 1)
    assert isinstance(writer, writers.ConsoleWriter) and report(1) is None
    assert os.listdir(tmp_path) == []


def test_summary_image_is_lr_bicubic_sr_hr_of_a_central_crop():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    sr = hr.astype(np.float32) + 0.3
    strip = writers.summary_image(lr, sr, hr, 2, crop=4)
    assert strip.dtype == np.uint8 and strip.shape == (8, 4 * 8, 3)
    y, x = 3, 4  # (10 - 4) // 2, (12 - 4) // 2
    crop = lr[y : y + 4, x : x + 4]
    np.testing.assert_array_equal(strip[:, :8], np.repeat(np.repeat(crop, 2, 0), 2, 1))
    np.testing.assert_array_equal(strip[:, 8:16], resize.imresize(crop, 2))
    np.testing.assert_array_equal(strip[:, 16:24], hr[6:14, 8:16])  # SR, quantised
    np.testing.assert_array_equal(strip[:, 24:], hr[6:14, 8:16])
