"""The experiment scripts stay runnable: the FMA peak probe, a quick model benchmark, the GPU check's
dry run, and every shell script (recipes, launchers) parses."""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

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


# --- the GPU check (experiments/perf/device_check.py) and its parts ------------------------------


def _files_under(folder) -> list[str]:
    return [os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files]


def test_device_check_dry_run_fits_its_budget_and_file_limits(tmp_path):
    check = load_script("experiments/perf/device_check.py")
    out = tmp_path / "out"
    t0 = time.perf_counter()
    argv = [
        sys.executable,
        os.path.join(EXPERIMENTS, "perf", "device_check.py"),
        "--dry-run",
        "--out",
        str(out),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=check.DRY_BUDGET_S + 60)
    wall = time.perf_counter() - t0
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert wall <= check.DRY_BUDGET_S
    files = _files_under(out)
    assert len(files) <= 8 and all(len(f.split(os.sep)) <= 3 for f in files)  # (<= 2 folders deep)
    table = (out / "device_check.txt").read_text()
    assert done.stdout.rstrip().endswith(table.rstrip()) and "targets:" in table  # the table comes last
    result = json.loads((out / "device_check.json").read_text())
    rows = result["rows"]
    plan = result["plan"]
    planned = [i["item"] for part in ("jax", "torch") for i in plan[part]] + [
        r["item"] for r in plan["train"]["runs"]
    ]
    assert set(planned) <= {r["item"] for r in rows}  # every planned item has a row
    assert [p["status"] for p in result["parts"]] == ["finished"] * 3
    assert not [r for r in rows if "error" in r]
    jax_steps = [r for r in rows if r["engine"] == "jax" and r.get("kind") == "step"]
    assert len(jax_steps) == 2 * len([i for i in plan["jax"] if i["do"] == "step"])  # K=1 and K=4 each
    assert all(r["ms_per_step"] > 0 and r["loss_finite"] and r["tflops"] > 0 for r in jax_steps)
    assert {r["options"] for r in jax_steps} == set(check.COMPILER_VARIANTS)  # every variant compiled on CPU
    (val,) = [r for r in rows if r.get("kind") == "validation"]
    assert val["first_s"] > 0 and val["second_s"] > 0 and val["psnr_finite"]
    torch_rows = [r for r in rows if r["engine"] == "torch" and r["item"] != "torch versions"]
    without_torch = any("PyTorch is not importable" in r.get("skipped", "") for r in torch_rows)
    if without_torch:
        assert all("PyTorch is not importable" in r["skipped"] for r in torch_rows)  # (the no-torch CI lane)
    else:
        graph = [r for r in torch_rows if r.get("mode") == "cuda_graph"]
        assert graph and all("need CUDA" in r["skipped"] for r in graph)
        timed = [r for r in torch_rows if r.get("kind") == "step" and "skipped" not in r]
        assert {r["mode"] for r in timed} == {"eager", "compile"} and all(r["ms_per_step"] > 0 for r in timed)
    trained = [r for r in rows if r.get("kind") == "train"]
    assert [r["config"] for r in trained] == ["edsr_x2", "edsr_baseline_x2"]
    for r in trained:
        assert r["steps_per_s"] > 0 and 0 <= r["data_wait"] <= 1 and r["validation_s"] > 0
        assert [i["step"] for i in r["intervals"]] == [4, 8]
    assert len(result["targets"]) == 9
    for target in result["targets"]:
        measured = not (without_torch and "PyTorch" in target["target"])
        assert (target["met"] in (True, False)) == measured, target


def test_device_check_skips_what_its_budget_does_not_reach(tmp_path, monkeypatch, capsys):
    check = load_script("experiments/perf/device_check.py")
    monkeypatch.setattr(check, "DRY_PART_LIMITS_S", {**check.DRY_PART_LIMITS_S, "jax": 2})
    monkeypatch.setattr(check, "DRY_BUDGET_S", 2 + check.FINISH_RESERVE_S + 1)  # nothing after the jax part
    monkeypatch.setattr(check, "DRY_ITEM_RESERVE_S", 0)  # (the worker is busy when its limit comes)
    assert check.main(["--dry-run", "--out", str(tmp_path), "--parts", "jax,torch"]) == 1
    result = json.loads((tmp_path / "device_check.json").read_text())
    jax_part, torch_part = result["parts"]
    assert jax_part["status"] == "stopped at its limit of 2 s" and torch_part["status"] == "skipped"
    skipped = {r["item"]: r["skipped"] for r in result["rows"] if "skipped" in r}
    killed = ("not reached: the jax part stopped at its limit of 2 s", "the part's time was spent")
    assert all(skipped[item["item"]] in killed for item in result["plan"]["jax"][2:])
    assert skipped["torch edsr_baseline_x2 eager"] == "the check's budget was spent"
    assert capsys.readouterr().out.rstrip().endswith((tmp_path / "device_check.txt").read_text().rstrip())


def test_conv_flops_count_the_convolutions_jax_traces():
    import math

    import jax
    from jax.extend import core

    from edsr_jax import models

    conv_flops = load_script("experiments/perf/conv_flops.py")

    def traced(jaxpr) -> float:  # 2 * output elements * (kernel window x input channels), nested jaxprs too
        total = 0.0
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                kernel = eqn.invars[1].aval.shape
                _, cin, *spatial = eqn.params["dimension_numbers"].rhs_spec
                total += (
                    2.0
                    * math.prod(eqn.outvars[0].aval.shape)
                    * kernel[cin]
                    * math.prod(kernel[d] for d in spatial)
                )
            for value in eqn.params.values():
                for sub in value if isinstance(value, list | tuple) else [value]:
                    if isinstance(sub, core.ClosedJaxpr | core.Jaxpr):
                        total += traced(getattr(sub, "jaxpr", sub))
        return total

    x = np.zeros((2, 6, 5, 3), np.float32)
    for arch in ("edsr", "mdsr"):
        for scale in (2, 3, 4):
            model = models.EDSR(scale, 2, 8) if arch == "edsr" else models.MDSR((2, 3, 4), 2, 8)
            variables = models.init(model, jax.random.key(0))
            jaxpr = jax.make_jaxpr(lambda v, x, m=model, s=scale: m.apply(v, x, scale=s))(variables, x).jaxpr
            assert traced(jaxpr) == 2 * conv_flops.sr_forward_flops(arch, 6, 5, scale, 2, 8), (arch, scale)
    per_step = conv_flops.train_step_flops("mdsr", 16, 48, (2, 3, 4), 16, 64)
    mean = sum(conv_flops.sr_forward_flops("mdsr", 48, 48, s, 16, 64) for s in (2, 3, 4)) / 3
    assert per_step == pytest.approx(3 * 16 * mean)


def test_a_compiler_variant_that_does_not_compile_gets_a_row_and_the_run_goes_on(tmp_path):
    check = load_script("experiments/perf/device_check.py")
    worker = load_script("experiments/perf/device_jax.py")
    plan = check.make_plan(dry_run=True)
    plan["variants"]["bad"] = {"xla_gpu_enable_command_buffer": "NO_SUCH_KIND"}
    plan.update(deadline=time.time() + 600)
    item = {"do": "step", "model": "edsr_baseline_x2", "precision": "bf16"}
    plan["jax"] = [{**item, "item": "bad", "options": "bad"}, {**item, "item": "good", "options": "default"}]
    worker.run(plan, worker.Rows(str(tmp_path / "rows.jsonl")))
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    (bad,) = [r for r in rows if r["item"] == "bad"]
    assert "xla_gpu_enable_command_buffer" in bad["error"] and "NO_SUCH_KIND" in bad["error"]
    assert [r["k"] for r in rows if r["item"] == "good" and r["ms_per_step"] > 0] == [1, 4]


def test_device_jax_trains_with_the_recipe_of_the_default_config():
    from edsr_jax.configs import default

    worker = load_script("experiments/perf/device_jax.py")
    config = default.get_config()
    assert worker.RECIPE == {key: config[key] for key in worker.RECIPE}


def test_device_train_reads_steps_data_wait_and_validation_from_the_trainers_log():
    worker = load_script("experiments/perf/device_train.py")
    lines = [
        ("{'arch': 'edsr'}: 4,531 parameters", 3.0),
        (
            "step 4/12  loss 67.47  grad_norm 27.18  learning_rate 0.0001  "
            "1.01 steps/s  data wait 1%  eta 4s",
            9.0,
        ),
        (
            "step 8/12  loss 65.18  grad_norm 26.25  learning_rate 0.0001  "
            "120.00 steps/s  data wait 10%  eta 0s",
            9.5,
        ),
        (
            "step 12/12  loss 65.00  grad_norm 26.00  learning_rate 0.0001  "
            "100.00 steps/s  data wait 30%  eta 0s",
            10.0,
        ),
        ("step 12  val/psnr_x2 10.2662  val/ssim_x2 0.0526", 12.5),
    ]
    parsed = worker.parse_log(lines)
    assert [i["step"] for i in parsed["intervals"]] == [4, 8, 12]
    assert parsed["steps_per_s"] == 110.0 and parsed["data_wait"] == pytest.approx(
        0.2
    )  # (the first holds the compile)
    assert parsed["first_log_s"] == 9.0 and parsed["validation_s"] == 2.5
    assert worker.parse_log(lines[:1]) == {"intervals": []}


def test_device_train_says_which_modules_are_missing_instead_of_running(tmp_path, monkeypatch):
    check = load_script("experiments/perf/device_check.py")
    worker = load_script("experiments/perf/device_train.py")
    monkeypatch.setattr(worker, "TRAIN_MODULES", ("json", "no_such_module_edsr_jax"))
    plan = {
        **check.make_plan(dry_run=True),
        "wheels": str(tmp_path / "no_wheels"),
        "deadline": time.time() + 60,
    }
    worker.run(plan, str(tmp_path / "rows.jsonl"))
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert [r["item"] for r in rows] == ["train edsr_x2", "train edsr_baseline_x2"]
    assert all(r["skipped"].startswith("edsr-jax train needs no_such_module_edsr_jax (") for r in rows)
    assert f"no wheels in {tmp_path / 'no_wheels'}" in rows[0]["skipped"]
