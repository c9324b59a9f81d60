"""The scoring loop (edsr_jax.evaluate): model and bicubic upscalers on benchmark samples, the
output hook, scoring a model per scale, scalars and the table."""

import os

import numpy as np
import pytest
from support.trees import numpy_init

from edsr_jax import evaluate, inference, models
from edsr_jax.data import benchmarks
from edsr_jax.data.benchmarks import Sample
from edsr_jax.errors import UserError
from edsr_jax.imaging import metrics, resize


def test_evaluate_images_with_a_model_upscaler(set5_dir):
    model = models.EDSR(scale=4, num_blocks=1, num_features=4)
    up = inference.make_upscaler(model, numpy_init(model), 4)
    samples = benchmarks.load_benchmark(os.path.dirname(set5_dir), "Set5", 4)[1:3]
    res = evaluate.evaluate_images(up, samples, scale=4, protocol=metrics.BENCHMARK)
    assert [i["name"] for i in res["images"]] == ["bird", "butterfly"]
    assert 0 < res["psnr"] < 40 and res["seconds"] > 0
    with pytest.raises(UserError, match="expected"):
        evaluate.evaluate_images(evaluate.bicubic(2), samples, scale=4)
    with pytest.raises(UserError, match="nothing to evaluate"):
        evaluate.evaluate_images(up, [], scale=4)


def _samples(scale, n=2, seed=0, size=24):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hr = np.cumsum(rng.integers(0, 9, (size + 4 * i, size + 4, 3)), axis=1).astype(np.uint8)
        hr = resize.modcrop(hr, scale)
        out.append(Sample(name=f"im{i}", lr=hr[::scale, ::scale].copy(), hr=hr))
    return out


def test_on_output_sees_each_sample_and_the_scored_uint8_output():
    samples = _samples(2)
    seen = []
    res = evaluate.evaluate_images(
        lambda lr: np.repeat(np.repeat(lr, 2, 0), 2, 1) + 0.4,  # float output, quantised before scoring
        samples,
        scale=2,
        on_output=lambda sample, sr: seen.append((sample.name, sr)),
    )
    assert [name for name, _ in seen] == ["im0", "im1"]
    for (_, sr), sample in zip(seen, samples, strict=True):
        assert sr.dtype == np.uint8 and sr.shape == sample.hr.shape
        np.testing.assert_array_equal(sr, np.repeat(np.repeat(sample.lr, 2, 0), 2, 1))
    p, s = metrics.evaluate_pair(seen[0][1], samples[0].hr, scale=2, protocol=metrics.BENCHMARK)
    assert res["images"][0] == {"name": "im0", "psnr": p, "ssim": s}
    assert res["psnr"] == pytest.approx(np.mean([i["psnr"] for i in res["images"]]))


def test_validation_scores_on_the_device_like_the_host_protocol_and_compiles_once():
    model = models.MDSR(scales=(2, 3), num_blocks=1, num_features=4)
    first, second = numpy_init(model, seed=0), numpy_init(model, seed=1)
    sets = {"val": (metrics.DIV2K, {2: _samples(2, size=40), 3: _samples(3, n=1, size=40), 4: []})}
    validation = evaluate.Validation(model, sets)
    for variables in (first, second):
        scalars, firsts = validation(variables)
        assert sorted(scalars) == ["val/psnr_x2", "val/psnr_x3", "val/ssim_x2", "val/ssim_x3"]
        for scale in (2, 3):
            samples = sets["val"][1][scale]
            host = evaluate.evaluate_images(
                inference.make_upscaler(model, variables, scale), samples, scale=scale, protocol=metrics.DIV2K
            )  # the float64 protocol of `edsr-jax eval`
            assert scalars[f"val/psnr_x{scale}"] == pytest.approx(host["psnr"], abs=1e-3)
            assert scalars[f"val/ssim_x{scale}"] == pytest.approx(host["ssim"], abs=1e-5)
            expected = metrics.quantize_uint8(inference.make_upscaler(model, variables, scale)(samples[0].lr))
            np.testing.assert_array_equal(firsts[("val", scale)], expected)
    assert {s: u.traces for s, u in validation._upscalers.items()} == {2: 1, 3: 1}  # compiled once


def test_bicubic_is_matlab_imresize_of_the_lr_and_the_table_lists_results():
    lr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(evaluate.bicubic(3)(lr), resize.imresize(lr, 3))
    row = {
        "dataset": "Set5",
        "scale": 2,
        "psnr": 33.666,
        "ssim": 0.93031,
        "images": [{}] * 5,
        "seconds": 1.25,
    }
    table = evaluate.format_table([row]).splitlines()
    assert table[0].split() == ["dataset", "scale", "PSNR", "SSIM", "images", "seconds"]
    assert table[1].split() == ["Set5", "x2", "33.67", "0.9303", "5", "1.2"]
