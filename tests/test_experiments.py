"""The experiment scripts stay runnable: the FMA peak probe, a quick model benchmark, and every
shell script (recipes, launchers, GPU benchmark) parses."""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from support.optional import import_torch
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
    import_torch()  # (it counts PyTorch's saved activations too)
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


def test_tpu_recipe_installs_the_client_its_gs_paths_need():
    import tomllib

    text = open(os.path.join(EXPERIMENTS, "recipes", "train_tpu_pod.sh")).read()
    assert "pip install -e '.[tpu]'" in text and "WORKDIR=gs://" in text
    with open(os.path.join(os.path.dirname(EXPERIMENTS), "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    for extra in ("tpu", "gcs"):  # etils.epath reaches gs:// through gcsfs where TensorFlow is absent
        assert any(r.startswith("gcsfs") for r in extras[extra]), extra


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


def test_bench_restart_times_the_first_step_of_a_process(tmp_path):
    bench_restart = load_script("experiments/perf/bench_restart.py")
    # A stand-in trainer: a progress bar (carriage returns) on stderr, then the first step line.
    code = "import sys,time; sys.stderr.write('x\\r'); time.sleep(0.3); print('step 1/2  loss 1')"
    pattern = bench_restart.FIRST_STEP["train"]
    first, total = bench_restart.timed_run([sys.executable, "-c", code], str(tmp_path), pattern, False, 60)
    assert 0.3 <= first <= total
    with pytest.raises(RuntimeError, match="without a first step"):
        no_step = [sys.executable, "-c", "print('step 2/2')"]
        bench_restart.timed_run(no_step, str(tmp_path), pattern, False, 60)
    demo_bar = "training:  50%|#####     | 1/2 [00:01<00:01]"
    assert bench_restart.FIRST_STEP["demo"].search(demo_bar)


def test_torch_channels_last_variants_compute_what_eager_does():
    torch = import_torch()
    from support import torch_reference

    variants = load_script("experiments/perf/torch_variants.py")
    net = torch_reference.randomize_(torch_reference.build_model("edsr", 2, 1, 8), 0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (1, 12, 12, 3)).astype(np.float32)
    names = ["eager", "channels_last"]
    for ensemble in (False, True):
        built = variants.inference_variants(net, x, ensemble, names)
        assert set(built) == {"torch", "torch_cl"} and not any(v.error for v in built.values())
        torch.testing.assert_close(built["torch_cl"].run(), built["torch"].run(), rtol=1e-4, atol=1e-3)
    lr = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    steps = variants.train_variants(net, lr, hr, names)
    losses = {name: [v.run() for _ in range(2)] for name, v in steps.items()}  # the 2nd after an Adam step
    np.testing.assert_allclose(losses["torch_cl"], losses["torch"], rtol=1e-4)


def test_a_torch_variant_that_fails_to_build_is_reported_not_raised():
    variants = load_script("experiments/perf/torch_variants.py")

    def make():
        raise RuntimeError("no C++ compiler\nfound")

    failed = variants._compiled("compile", make)
    assert failed.run is None and failed.error == "RuntimeError: no C++ compiler found"
    compiled = variants._compiled("compile", lambda: lambda: None)
    assert compiled.run is not None and compiled.compile_s >= 0


def test_bench_models_ratios_pair_rounds_and_name_the_fastest_torch_variant():
    bench_models = load_script("experiments/perf/bench_models.py")
    times = {"jax": [1.0, 2.0, 3.0], "torch": [2.0, 2.0, 6.0], "torch_cl": [1.0, 4.0, 3.0]}
    ratios = bench_models.torch_ratios(times)
    assert ratios["torch"]["paired"] == 0.5 and ratios["torch_cl"]["paired"] == 1.0
    assert ratios["torch"]["of_medians"] == 1.0 and ratios["torch_cl"]["of_minima"] == 1.0
    assert ratios["fastest"] == {"engine": "torch", **ratios["torch"]}  # medians 2.0 vs 3.0


def test_bench_models_quick_run_with_torch_variants(tmp_path):
    import_torch()
    bench_models = load_script("experiments/perf/bench_models.py")
    out = tmp_path / "bench.json"
    argv = ["--quick", "--workloads", "infer", "--repeats", "1", "--peak-gflops", "50", "--compare-torch"]
    argv += ["--torch-variants", "eager,channels_last", "--json", str(out)]
    assert bench_models.main(argv) == 0
    (row,) = json.loads(out.read_text())["results"]
    assert set(row["times"]) == {"jax", "torch", "torch_cl"} and len(row["times"]["torch_cl"]) == 1
    assert set(row["ratios"]) == {"torch", "torch_cl", "fastest"} and row["ratios"]["torch"]["paired"] > 0


def test_bench_train_cli_dry_run_reads_the_trainers_log(tmp_path):
    bench = load_script("experiments/perf/bench_train_cli.py")
    out = tmp_path / "train_cli.json"
    assert bench.main(["--dry-run", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["step"] for r in result["log"]] == [2, 4, 6] and result["intervals"] == 2
    assert result["steps_per_s"] > 0 and 0 <= result["data_wait"] <= 1 and result["wall_s"] > 0


def test_bench_train_cli_reports_missing_modules_instead_of_running(tmp_path, monkeypatch):
    bench = load_script("experiments/perf/bench_train_cli.py")
    monkeypatch.setattr(bench, "NEEDED", ("json", "no_such_module_edsr_jax"))
    out = tmp_path / "train_cli.json"
    assert bench.main(["--dry-run", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["skipped"] == (
        "edsr-jax train needs no_such_module_edsr_jax (not importable here)"
    )
