"""The embedded demo (edsr_jax.apps.demo, shrunk to a tiny model and 3 steps), its report and its
config (edsr_jax.configs.demo)."""

import contextlib
import json
import os

import numpy as np
import pytest
from PIL import Image
from support.paths import ROOT

import edsr_jax
from edsr_jax import cli, models
from edsr_jax.apps import demo, demo_report
from edsr_jax.cli import config_flags
from edsr_jax.configs import demo as demo_config


def _fake_benchmarks(root):
    """A benchmark folder with a two-image ``Set5`` (LR images made by the loader)."""
    rng = np.random.default_rng(0)
    hr = root / "Set5" / "HR"
    hr.mkdir(parents=True)
    for name in ("a", "b"):
        smooth = np.cumsum(rng.integers(0, 9, (36, 44, 3)), axis=1) % 256
        Image.fromarray(smooth.astype(np.uint8)).save(hr / f"{name}.png")
    return str(root)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """``edsr-jax demo --steps 3`` with the model shrunk to B1/F8: (exit code, workdir, stdout, data)."""
    mp = pytest.MonkeyPatch()
    original = demo_config.get_config

    def tiny_config(num_train_steps=800):
        config = original(num_train_steps)
        config.model.num_blocks, config.model.num_features = 1, 8
        return config

    mp.setattr(demo_config, "get_config", tiny_config)
    root = tmp_path_factory.mktemp("demo")
    data_dir = _fake_benchmarks(root / "bench")
    workdir = str(root / "run")
    capture = tmp_path_factory.mktemp("out") / "stdout.txt"
    try:
        with open(capture, "w") as f, contextlib.redirect_stdout(f):
            code = cli.main(
                ["demo", "--workdir", workdir, "--steps", "3", "--data-dir", data_dir, "--no-progress"]
            )
    finally:
        mp.undo()
    return code, workdir, capture.read_text(), data_dir


def test_demo_prints_the_table_and_writes_figure_and_summary(demo_run):
    code, workdir, out, _ = demo_run
    assert code == 0
    assert "bicubic PSNR/SSIM" in out and "EDSR PSNR/SSIM" in out
    assert any(line.startswith("held-out") for line in out.splitlines())
    assert any(line.startswith("Set5") for line in out.splitlines())
    with Image.open(os.path.join(workdir, demo.FIGURE_PNG)) as fig:
        assert fig.mode == "RGB"
        # one row per set (held-out, Set5), three crops per row
        assert fig.size[0] >= 3 * demo_report.FIGURE_CROP * demo_report.FIGURE_ZOOM
        assert fig.size[1] >= 2 * demo_report.FIGURE_CROP * demo_report.FIGURE_ZOOM
    with open(os.path.join(workdir, demo.DEMO_JSON)) as f:
        summary = json.load(f)
    assert summary["steps"] == 3 and summary["trained_steps"] == 3
    rows = {r["dataset"]: r for r in summary["results"]}
    assert rows[demo_report.HELD_OUT]["images"] == 3 and rows["Set5"]["images"] == 2
    for r in rows.values():
        assert r["gain_db"] == pytest.approx(r["edsr"]["psnr"] - r["bicubic"]["psnr"])


def test_demo_checkpoint_loads_and_works_with_eval_and_upscale(demo_run, tmp_path):
    code, workdir, _, data_dir = demo_run
    assert code == 0
    model, variables = edsr_jax.load_model(workdir)
    assert isinstance(model, models.EDSR) and model.scale == 2
    out = str(tmp_path / "eval.json")
    assert (
        cli.main(
            [
                "eval",
                "--checkpoint",
                workdir,
                "--data-dir",
                data_dir,
                "--datasets",
                "Set5",
                "--scales",
                "2",
                "--json",
                out,
                "--no-progress",
            ]
        )
        == 0
    )
    with open(out) as f:
        assert len(json.load(f)["results"][0]["images"]) == 2
    Image.fromarray(np.zeros((5, 9, 3), np.uint8)).save(tmp_path / "in.png")
    src, dst = str(tmp_path / "in.png"), str(tmp_path / "o.png")
    assert cli.main(["upscale", "--checkpoint", workdir, src, dst]) == 0
    assert Image.open(tmp_path / "o.png").size == (18, 10)


def test_demo_refuses_a_workdir_of_another_length(demo_run, capsys):
    _, workdir, _, _ = demo_run
    assert cli.main(["demo", "--workdir", workdir, "--steps", "5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "3 steps" in err and len(err.strip().splitlines()) == 1


def test_demo_config_is_the_measured_recipe():
    config = demo_config.get_config(100)
    assert (config.model.num_blocks, config.model.num_features, config.model.res_scale) == (4, 48, 1.0)
    assert config.scales == (demo_config.SCALE,) == (2,) and config.data.source == "skimage"
    assert (
        config.learning_rate == 1e-3
        and config.learning_rate_schedule == "cosine"
        and config.warmup_fraction == 0.05
    )
    assert config.data.flat_patch_threshold > 0 and config.num_train_steps == 100
    from_file = config_flags.load_config(os.path.join(ROOT, "configs", "demo.py"))
    assert from_file.to_dict() == demo_config.get_config(800).to_dict()
    assert config_flags.load_config("demo").to_dict() == from_file.to_dict()


def test_plan_steps_fits_the_budget_with_a_floor():
    assert demo.plan_steps(400, 0.5) == int(800 / demo.PLAN_MARGIN)
    assert demo.plan_steps(400 * demo.PLAN_MARGIN, 0.77) == 519
    assert demo.plan_steps(1, 10.0) == demo.MIN_STEPS


def _drive(pacer, now, steps, seconds_per_step):
    """Calls ``pacer`` for ``steps`` steps of ``seconds_per_step`` each; the step where it stopped."""
    for step in steps:
        now[0] += seconds_per_step
        if pacer(step):
            return step
    return None


def test_pacer_shortens_the_plan_when_steps_are_slower_than_measured():
    now = [10.0]
    pacer = demo.Pacer(t0=0.0, seconds=100.0, total=1000, clock=lambda: now[0])
    # 1 s per step: 1000 steps cannot fit; judged after skipping 5 steps, over >= 20 steps and 20 s
    stopped = _drive(pacer, now, range(1, 100), 1.0)
    assert stopped == 1 + demo.REPLAN_SKIP_STEPS + demo.REPLAN_MIN_STEPS
    elapsed = now[0]
    assert pacer.rate == pytest.approx(1.0)
    assert pacer.new_total == stopped + int(100 - elapsed - demo.RESTART_SECONDS)
    on_time = demo.Pacer(t0=0.0, seconds=100.0, total=60, clock=lambda: now[0])
    now[0] = 0.0
    assert _drive(on_time, now, range(1, 60), 1.0) is None  # ends at t = 59: on schedule
    now[0] = demo.DEADLINE_FACTOR * 100.0 + 1.0
    assert on_time(61) is True and on_time.new_total is None  # past the deadline: stop for good


def test_pacer_ignores_the_fast_first_steps_of_a_segment():
    now = [10.0]
    pacer = demo.Pacer(t0=0.0, seconds=100.0, total=60, clock=lambda: now[0])
    # dispatched ahead: the first steps return at once, then 1 s per step (on schedule)
    assert _drive(pacer, now, range(1, 6), 0.001) is None
    assert _drive(pacer, now, range(6, 55), 1.0) is None


def test_pacer_lengthens_an_early_plan_when_steps_are_much_faster_at_most_twice():
    now = [0.0]
    pacer = demo.Pacer(t0=0.0, seconds=1000.0, total=1000, clock=lambda: now[0])
    stopped = _drive(pacer, now, range(1, 1000), 0.1)  # 0.1 s per step: about 9,000 would fit
    assert stopped is not None and stopped < 500
    assert pacer.new_total == 2 * 1000
    now[0] = 0.0
    fixed = demo.Pacer(t0=0.0, seconds=1000.0, total=1000, replan=False, clock=lambda: now[0])
    assert _drive(fixed, now, range(1, 1000), 0.1) is None


def test_figure_crop_is_where_bicubic_errs_most():
    error = np.zeros((100, 120))
    error[60:80, 90:110] = 1.0
    y, x = demo_report.detail_window(error, 24)
    assert y <= 60 and y + 24 >= 80 and x <= 90 and x + 24 >= 110
