"""experiments/parity_torch.py: its PyTorch Dataset crops aligned pairs and augments both alike,
and a --quick run of both trainers scores both sides."""

import itertools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from support.optional import import_torch
from support.paths import ROOT
from support.scripts import load_script

from edsr_jax.imaging import resize

SCRIPT = os.path.join(ROOT, "experiments", "parity_torch.py")

import_torch()  # (both sides of the script need PyTorch; skips the module without it)


@pytest.fixture(scope="module")
def parity():
    return load_script("experiments/parity_torch.py")


def _find(image: np.ndarray, patch: np.ndarray) -> list[tuple[int, int]]:
    """Every top-left (y, x) where ``patch`` occurs in ``image``."""
    h, w = patch.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(image, (h, w, 3))[..., 0, :, :, :]
    return [tuple(int(v) for v in p) for p in np.argwhere((windows == patch).all(axis=(2, 3, 4)))]


def _as_uint8(tensor) -> np.ndarray:
    return tensor.numpy().transpose(1, 2, 0).round().astype(np.uint8)


def test_dataset_crops_are_aligned_on_a_downscaled_pair(parity):
    scale, patch = 2, 6
    hr = np.random.default_rng(0).integers(0, 256, (61, 75, 3), dtype=np.uint8)  # (odd: cropped)
    lr = resize.downscale(hr, scale)
    dataset = parity.PatchDataset([(hr, lr)], patch, scale, repeat=3, augment=False)
    np.random.seed(0)
    seen = set()
    for i in range(12):
        lr_t, hr_t = dataset[i]
        assert lr_t.dtype == hr_t.dtype and tuple(lr_t.shape) == (3, patch, patch)
        assert tuple(hr_t.shape) == (3, patch * scale, patch * scale) and float(hr_t.max()) > 1
        [(y, x)] = _find(lr, _as_uint8(lr_t))
        assert (scale * y, scale * x) in _find(hr, _as_uint8(hr_t))
        seen.add((y, x))
    assert len(seen) > 6  # random positions
    assert len(dataset) == 3


def test_augmentation_applies_the_same_flip_to_lr_and_hr(parity):
    scale = 2
    yy, xx = np.mgrid[0:5, 0:7]
    lr = np.stack([yy * 40, xx * 30, (yy * 7 + xx * 13) % 256], axis=-1).astype(np.uint8)
    hr = np.repeat(np.repeat(lr, scale, 0), scale, 1)  # each LR pixel is an s x s HR block
    results = set()
    for flags in itertools.product([False, True], repeat=3):
        lr_a, hr_a = parity.augment(lr, hr, *flags)
        np.testing.assert_array_equal(np.repeat(np.repeat(lr_a, scale, 0), scale, 1), hr_a)
        results.add(lr_a.tobytes() + bytes(lr_a.shape))
    assert len(results) == 8  # each coin changes the patch

    dataset = parity.PatchDataset([(hr, lr)], 3, scale, repeat=1, augment=True)
    np.random.seed(1)
    orientations = set()
    for _ in range(40):
        lr_t, hr_t = (_as_uint8(t) for t in dataset[0])
        np.testing.assert_array_equal(np.repeat(np.repeat(lr_t, scale, 0), scale, 1), hr_t)
        orientations.add(
            (int(lr_t[0, 0, 0]) < int(lr_t[-1, -1, 0]), int(lr_t[0, 0, 1]) < int(lr_t[-1, -1, 1]))
        )
    assert len(orientations) > 1  # the dataset does flip


def test_quick_run_scores_both_sides(tmp_path, benchmarks_dir):
    out = tmp_path / "parity.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, SCRIPT, "--quick", "--benchmark-dir", benchmarks_dir, "--json", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {r["side"]: r for r in report["rows"]}
    assert set(rows) == {"torch", "jax"}
    for row in rows.values():
        assert math.isfinite(row["gain_db"]) and math.isfinite(row["bicubic_psnr"])
        assert row["wall_s"] > 0
    assert rows["torch"]["bicubic_psnr"] == rows["jax"]["bicubic_psnr"]  # one evaluator
    assert set(report["summary"]["comparisons"]) == {"jax"}
    assert "jax - torch" in result.stdout


@pytest.mark.parametrize("schedule", ["constant", "step"])
def test_jax_overrides_make_the_recipe_and_the_same_schedule(parity, schedule):
    from edsr_jax import optim
    from edsr_jax.cli import config_flags

    args = parity.parse_args(
        ["--steps", "50", "--learning-rate-schedule", schedule, "--learning-rate-decay-steps", "20"]
    )
    flags = parity.jax_overrides(args, seed=3)
    config = config_flags.apply_overrides(
        config_flags.load_config("demo"), config_flags.split_overrides(flags)
    )
    shape = (config.model.num_blocks, config.model.num_features, config.batch_size, config.patch_size)
    assert shape == (4, 48, 16, 48)
    assert (config.seed, config.num_train_steps, config.data.source) == (3, 50, "skimage")
    assert config.data.flat_patch_threshold == 0 and config.warmup_fraction == 0
    schedule_fn = optim.create_learning_rate_fn(config)
    for step in (0, 19, 20, 49):
        assert float(schedule_fn(step)) == pytest.approx(5e-4 * parity.learning_rate_factor(step, args))
    assert parity.learning_rate_factor(49, args) == (1.0 if schedule == "constant" else 0.25)
    args.ema_decay = 0.999
    assert "--config.ema_decay=0.999" in parity.jax_overrides(args, seed=0)


def test_trainer_bench_rates_from_log_line_times(parity):
    bench = load_script("experiments/perf/bench_trainer.py")
    lines = [(10, 12.0), (20, 17.0), (30, 21.0), (40, 25.0)]  # 10 steps per 4 s after step 20
    assert parity.logged_rate(lines, 20) == pytest.approx(2.5)
    assert parity.logged_rate(lines, 10) == pytest.approx(30 / 13)
    assert parity.logged_rate(lines[:1], 10) is None
    assert bench.estimate_first_step(lines, 1.0, 2.5) == pytest.approx(11.0 - 9 / 2.5)
    rounds = [
        {s: {"steps_per_s": r, "first_step_s": 1.0, "total_s": 9.0} for s, r in (("torch", 1.0), ("jax", j))}
        for j in (1.1, 1.5, 3.0)
    ]
    summary = bench.summarize(rounds)
    assert summary["ratio"] == pytest.approx(1.5) and summary["meets_target"]
    assert summary["jax"]["steps_per_s"] == pytest.approx(1.5)
