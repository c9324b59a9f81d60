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


def _samples(scale, n=2, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hr = np.cumsum(rng.integers(0, 9, (24 + 4 * i, 28, 3)), axis=1).astype(np.uint8)
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


def test_score_model_scores_every_scale_and_as_scalars_names_them():
    model = models.MDSR(scales=(2, 3), num_blocks=1, num_features=4)
    variables = numpy_init(model)
    outputs = []
    results = evaluate.score_model(
        model,
        variables,
        {2: _samples(2), 3: _samples(3, n=1), 4: []},
        protocol=metrics.BENCHMARK,
        on_output=lambda scale, sample, sr: outputs.append((scale, sample.name, sr.shape)),
    )
    assert sorted(results) == [2, 3]  # empty lists are skipped
    assert [i["name"] for i in results[2]["images"]] == ["im0", "im1"]
    assert outputs == [(2, "im0", (24, 28, 3)), (2, "im1", (28, 28, 3)), (3, "im0", (24, 27, 3))]
    up3 = inference.make_upscaler(model, variables, 3)
    direct = evaluate.evaluate_images(up3, _samples(3, n=1), scale=3, protocol=metrics.BENCHMARK)
    assert results[3]["psnr"] == pytest.approx(direct["psnr"])
    scalars = evaluate.as_scalars(results, "val")
    assert scalars == {
        "val/psnr_x2": results[2]["psnr"],
        "val/ssim_x2": results[2]["ssim"],
        "val/psnr_x3": results[3]["psnr"],
        "val/ssim_x3": results[3]["ssim"],
    }


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
