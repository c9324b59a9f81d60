"""The experiment scripts stay runnable: the FMA peak probe, a quick model benchmark, and every
shell script (recipes, launchers, GPU benchmark) parses."""

import glob
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from support.paths import EXPERIMENTS
from support.scripts import load_script

from edsr_jax.imaging import metrics

SHELL_SCRIPTS = sorted(glob.glob(os.path.join(EXPERIMENTS, "**", "*.sh"), recursive=True))


def test_fma_peak_measures_a_positive_rate():
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build the FMA kernel")
    fma_peak = load_script("experiments/perf/fma_peak.py")
    assert fma_peak.measure(threads=1, seconds=0.05) > 1.0  # GFLOP/s; any real CPU does far more


def test_bench_models_quick_run_writes_results(tmp_path):
    bench_models = load_script("experiments/perf/bench_models.py")
    out = tmp_path / "bench.json"
    argv = ["--quick", "--workloads", "infer,train4", "--repeats", "1", "--peak-gflops", "50"]
    assert bench_models.main(argv + ["--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["workload"] for r in rows] == ["infer", "train4"]
    assert all(len(r["times"]["jax"]) == 1 and r["flops"] > 0 for r in rows)
    assert rows[1]["compile_s"] > 0


def test_bench_memory_quick_run_reports_a_ratio(tmp_path):
    bench_memory = load_script("experiments/perf/bench_memory.py")
    out = tmp_path / "memory.json"
    assert bench_memory.main(["--quick", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["args"]["batch"] == 2 and figures["args"]["patch"] == 8
    edsr, srresnet = figures["xla"]["edsr_baseline"], figures["xla"]["srresnet"]
    assert 0 < edsr["temp"] < srresnet["temp"]  # batch norm keeps more for the backward pass
    expected = edsr["temp_plus_argument"] / srresnet["temp_plus_argument"]
    assert figures["ratio_edsr_srresnet"] == pytest.approx(expected) and 0 < expected < 1
    assert figures["saved"] == pytest.approx(1 - expected) and figures["paper_saved"] == 0.4
    # PyTorch keeps 2 feature maps per EDSR block and 4 per SRResNet block (+ 3-channel images)
    assert 16 * 2 < figures["torch"]["edsr_baseline"]["maps"] < figures["torch"]["srresnet"]["maps"]
    assert 0.45 < figures["torch_ratio"] < 0.55


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: os.path.relpath(p, EXPERIMENTS))
def test_experiment_scripts_parse(script):
    result = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_experiment_scripts_exist():
    names = {os.path.relpath(p, EXPERIMENTS) for p in SHELL_SCRIPTS}
    recipes = {
        "train_edsr_div2k.sh",
        "train_mdsr_div2k.sh",
        "reproduce_table3.sh",
        "train_tpu_pod.sh",
        "train_slurm_gpu.sh",
    }
    assert {os.path.join("recipes", n) for n in recipes} <= names
    assert os.path.join("perf", "gpu_bench.sh") in names


@pytest.mark.parametrize("script", ["train_tpu_pod.sh", "train_slurm_gpu.sh"])
def test_launch_scripts_are_valid_bash_and_document_batch_scaling(script):
    path = os.path.join(EXPERIMENTS, "recipes", script)
    subprocess.run(["bash", "-n", path], check=True)
    text = open(path).read()
    assert "batch_size" in text and "learning_rate" in text and "edsr-jax train" in text


def test_bicubic_protocols_scores_like_eval_on_its_first_row():
    # Its valid-window SSIM and PSNR on float Y are the library's metrics (its other rows differ
    # from these by the conventions it compares, and only by them).
    tool = load_script("experiments/tools/bicubic_protocols.py")
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(np.int16) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    a, b = tool.y_channel(sr)[2:-2, 2:-2], tool.y_channel(hr)[2:-2, 2:-2]
    assert tool.psnr(a, b) == pytest.approx(float(metrics.psnr(sr, hr, scale=2)), abs=1e-6)
    assert tool.ssim(a, b, whole_image=False) == pytest.approx(float(metrics.ssim(sr, hr, scale=2)), abs=1e-6)
    assert tool.ssim(a, b, whole_image=True) != pytest.approx(tool.ssim(a, b, whole_image=False), abs=1e-4)
