"""Evaluating a run (``edsr-jax eval`` on a training workdir): the checkpoint sweep and its curve,
training's own validation history, saved results, the HTML report in a real browser, paired LR/HR
sets, several devices, half precision. Uses a tiny run with three kept checkpoints and Set5."""

import csv
import json
import os
import re
import shutil
import subprocess

import jax
import numpy as np
import pytest
from PIL import Image
from support.configs import tiny_config

from edsr_jax import cli, inference, models, train
from edsr_jax.apps import sweep
from edsr_jax.checkpoint import exported
from edsr_jax.imaging import files, metrics

pytestmark = pytest.mark.usefixtures("compilation_cache")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def run(tmp_path_factory, cache_dir):
    """A tiny training workdir with checkpoints (and validation scores) at steps 2, 4 and 6."""
    workdir = str(tmp_path_factory.mktemp("run") / "w")
    config = tiny_config(cache_dir, keep_checkpoints=3, eval_every_steps=2)
    train.train_and_evaluate(config, workdir)
    return workdir


def evaluate(benchmarks_dir, *args) -> int:
    return cli.main(["eval", "--data-dir", benchmarks_dir, "--datasets", "Set5", "--no-progress", *args])


def test_the_sweep_scores_every_kept_step_and_marks_the_best(run, benchmarks_dir, tmp_path, capsys):
    prefix = str(tmp_path / "curve")
    assert (
        evaluate(
            benchmarks_dir,
            "--checkpoint",
            run,
            "--steps",
            "all",
            "--curve",
            prefix,
            "--json",
            str(tmp_path / "r.json"),
        )
        == 0
    )
    out = capsys.readouterr().out
    curve = json.load(open(prefix + ".json"))
    assert sorted(r["step"] for r in curve["rows"]) == [2, 4, 6]
    (best,) = curve["best"]
    assert best["psnr"] == max(r["psnr"] for r in curve["rows"])  # the best step is the highest PSNR
    assert f"best step for Set5 x2: {best['step']}" in out
    with open(prefix + ".csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4, 6] and float(rows[0]["psnr"]) == curve["rows"][0]["psnr"]
    with Image.open(prefix + ".png") as plot:
        assert plot.size[0] > 300 and plot.size[1] > 200
    steps = json.load(open(tmp_path / "r.json"))["steps"]
    assert [s["step"] for s in steps] == [2, 4, 6]
    assert [s["results"][0]["psnr"] for s in steps] == [r["psnr"] for r in curve["rows"]]


def test_named_steps_latest_best_and_a_step_that_is_not_kept(run, benchmarks_dir, tmp_path, capsys):
    assert sweep.resolve_steps(run, "2,6") == [2, 6]
    assert sweep.resolve_steps(run, "best") == ["best"]
    # A sweep of one step (a run that keeps one checkpoint) still writes its curve.
    assert evaluate(benchmarks_dir, "--checkpoint", run, "--steps", "4", "--curve", str(tmp_path / "c")) == 0
    assert [r["step"] for r in json.load(open(tmp_path / "c.json"))["rows"]] == [4]
    assert "best step for Set5 x2: 4" in capsys.readouterr().out
    assert evaluate(benchmarks_dir, "--checkpoint", run, "--steps", "5") == 2
    err = capsys.readouterr().err
    assert "steps [5] are not kept" in err and "kept steps: [2, 4, 6]" in err


def test_the_curve_from_training_logs_needs_no_scoring(run, tmp_path):
    prefix = str(tmp_path / "logs")
    assert cli.main(["eval", "--checkpoint", run, "--from-logs", "--curve", prefix]) == 0
    rows = json.load(open(prefix + ".json"))["rows"]
    assert {(r["dataset"], r["scale"]) for r in rows} == {("val", 2)}
    assert [r["step"] for r in rows] == [2, 4, 6]


def test_saved_results_are_the_scored_images_under_the_official_names(run, benchmarks_dir, tmp_path):
    folder = tmp_path / "sr"
    assert (
        evaluate(
            benchmarks_dir,
            "--checkpoint",
            run,
            "--save-results",
            str(folder),
            "--json",
            str(tmp_path / "r.json"),
        )
        == 0
    )
    names = sorted(os.listdir(folder / "Set5" / "x2"))
    assert names == [f"{n}_x2_SR.png" for n in ("baby", "bird", "butterfly", "head", "woman")]
    model, variables = exported.load_model(run)
    lr = files.read_image(os.path.join(benchmarks_dir, "Set5", "LR_bicubic", "X2", "birdx2.png"))
    want = metrics.quantize_uint8(inference.make_upscaler(model, variables, 2)(lr))
    np.testing.assert_array_equal(files.read_image(folder / "Set5" / "x2" / "bird_x2_SR.png"), want)
    with open(folder / "Set5_x2.csv") as f:
        table = {r["name"]: float(r["psnr"]) for r in csv.DictReader(f)}
    scored = {i["name"]: i["psnr"] for i in json.load(open(tmp_path / "r.json"))["results"][0]["images"]}
    assert table == pytest.approx(scored, abs=1e-4)
    hr = files.read_image(os.path.join(benchmarks_dir, "Set5", "HR", "bird.png"))[
        : want.shape[0], : want.shape[1]
    ]
    assert metrics.evaluate_pair(want, hr, scale=2)[0] == pytest.approx(scored["bird"])  # the image scored


def test_the_report_holds_every_image_and_renders_in_a_real_browser(run, benchmarks_dir, tmp_path):
    report = str(tmp_path / "report.html")
    other = str(tmp_path / "other")
    model = models.EDSR(scale=2, num_blocks=1, num_features=8)
    exported.save_model(other, model, models.init(model, jax.random.key(7)))
    assert (
        evaluate(
            benchmarks_dir, "--checkpoint", run, "--steps", "best", "--report", report, "--compare", other
        )
        == 0
    )
    text = open(report, encoding="utf-8").read()
    assert "http" not in text.replace("http-equiv", "")  # self-contained: no fetched resource
    assert text.count("class='image-row'") == 5 and text.count("<div class='viewer'>") == 5
    assert text.count("type='range'") == 5 and "other PSNR" in text
    # The embedded data is JSON as a browser's script element holds it (no entity decoding).
    embedded = re.search(r"<script type='application/json' id='edsr-jax-results'>(.*?)</script>", text, re.S)
    data = json.loads(embedded.group(1))
    assert [(r["dataset"], r["scale"]) for r in data["results"]] == [("Set5", 2)]
    assert data["title"].startswith(f"checkpoint {run}, step ")
    if CHROMIUM is None:
        pytest.skip("no Chromium here to render the report (.ci/run installs Debian's chromium)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    url = "file://" + report
    dom = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count('class="image-row"') == 5  # every per-image row rendered
    probe = tmp_path / "probe.html"  # the report plus a script that parses its data as a page would
    probe.write_text(
        text.replace(
            "</body>",
            "<script>var d = JSON.parse(document.getElementById('edsr-jax-results').textContent);"
            "document.body.setAttribute('data-parsed', d.results[0].dataset + ' ' + d.results[0].psnr);"
            "</script></body>",
        ),
        encoding="utf-8",
    )
    parsed = subprocess.run(
        [CHROMIUM, *flags, "--dump-dom", "file://" + str(probe)], capture_output=True, text=True, timeout=120
    ).stdout
    assert re.search(r'data-parsed="Set5 \d+\.\d+"', parsed), parsed[:300]
    images = re.findall(r'<img class="crop" src="data:image/png;base64,[^"]+"', dom)
    assert len(images) == 5 * 5  # bicubic, model, HR and the slider's two per image
    shot = tmp_path / "report.png"
    subprocess.run(
        [CHROMIUM, *flags, "--window-size=1000,900", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[:2] == (900, 1000) and pixels.std() > 10  # a page with pictures, not blank


def test_a_paired_set_is_scored_against_its_own_lr_files(run, benchmarks_dir, tmp_path, capsys):
    # LR/ holds "real" degradations (here: the MATLAB LR images, renamed without the x2 suffix
    # for two of them): nothing is made, every file is matched by name.
    root = tmp_path / "sets"
    set5 = os.path.join(benchmarks_dir, "Set5")
    shutil.copytree(os.path.join(set5, "HR"), root / "Mine" / "HR")
    os.makedirs(root / "Mine" / "LR")
    for i, name in enumerate(sorted(os.listdir(os.path.join(set5, "HR")))):
        stem = os.path.splitext(name)[0]
        target = f"{stem}.png" if i < 2 else f"{stem}x2.png"
        shutil.copy(os.path.join(set5, "LR_bicubic", "X2", f"{stem}x2.png"), root / "Mine" / "LR" / target)
    args = ["eval", "--data-dir", str(root), "--datasets", "Mine", "--checkpoint", run, "--no-progress"]
    assert cli.main([*args, "--json", str(tmp_path / "mine.json")]) == 0
    assert evaluate(benchmarks_dir, "--checkpoint", run, "--json", str(tmp_path / "set5.json")) == 0
    mine = json.load(open(tmp_path / "mine.json"))["results"][0]["images"]
    set5_scores = json.load(open(tmp_path / "set5.json"))["results"][0]["images"]
    assert [i["psnr"] for i in mine] == [i["psnr"] for i in set5_scores]  # the same pairs
    os.remove(root / "Mine" / "LR" / "headx2.png")
    capsys.readouterr()
    assert cli.main(args) == 2
    assert "paired set 'Mine' has no LR image for head at x2" in capsys.readouterr().err


def test_several_devices_give_exactly_the_one_device_numbers():
    model = models.EDSR(scale=2, num_blocks=1, num_features=8)
    variables = models.init(model, jax.random.key(0))
    images = [
        np.random.default_rng(i).integers(0, 256, (20 + i, 17 + 2 * i, 3), dtype=np.uint8) for i in range(5)
    ]
    for options in ({}, {"self_ensemble": True}, {"tile": 24}, {"tile": 24, "self_ensemble": True}):
        one = list(
            inference.make_upscaler(model, variables, 2, devices=jax.devices()[:1], **options).map(images)
        )
        upscaler = inference.make_upscaler(model, variables, 2, devices=jax.devices(), **options)
        assert len(upscaler.devices) == 8
        for a, b in zip(one, upscaler.map(images), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_evaluation_stays_close_to_float32(run, benchmarks_dir, tmp_path, dtype):
    scores = {}
    for name in ("float32", dtype):
        assert (
            evaluate(
                benchmarks_dir, "--checkpoint", run, "--dtype", name, "--json", str(tmp_path / f"{name}.json")
            )
            == 0
        )
        scores[name] = json.load(open(tmp_path / f"{name}.json"))["results"][0]["psnr"]
    assert scores[dtype] != scores["float32"] and abs(scores[dtype] - scores["float32"]) < 0.1
