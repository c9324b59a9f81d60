"""``edsr-jax eval``: the paper's Set5 bicubic numbers, the JSON it writes, a model checkpoint and
its scales, missing sets."""

import json
import os

import numpy as np
import pytest
from PIL import Image
from support.images import copy_hr
from support.trees import numpy_init

from edsr_jax import atomic, cli, models
from edsr_jax.checkpoint import exported

# The paper protocol's Set5 Bicubic row (REFERENCE section 6): scale -> (PSNR, SSIM).
SET5_BICUBIC = {2: (33.67, 0.9303), 3: (30.40, 0.8689), 4: (28.43, 0.8111)}


@pytest.fixture(scope="module")
def bicubic_run(benchmarks_dir, tmp_path_factory):
    """``edsr-jax eval --method bicubic`` on Set5 (default scales: x2/x3/x4), once: (exit code, JSON)."""
    out = str(tmp_path_factory.mktemp("eval") / "bicubic.json")
    code = cli.main(
        [
            "eval",
            "--data-dir",
            benchmarks_dir,
            "--datasets",
            "Set5",
            "--method",
            "bicubic",
            "--json",
            out,
            "--no-progress",
        ]
    )
    with open(out) as f:
        return code, json.load(f)


def test_bicubic_set5_reproduces_the_published_protocol_numbers(bicubic_run):
    code, payload = bicubic_run
    assert code == 0
    got = {r["scale"]: (r["psnr"], r["ssim"]) for r in payload["results"]}
    for scale, (psnr, ssim) in SET5_BICUBIC.items():
        assert got[scale][0] == pytest.approx(psnr, abs=0.01), scale
        assert got[scale][1] == pytest.approx(ssim, abs=0.0005), scale


def test_eval_json_schema(bicubic_run):
    _, payload = bicubic_run
    assert payload["protocol"]["benchmark"]["channel"].startswith("Y")
    assert [(r["dataset"], r["scale"]) for r in payload["results"]] == [("Set5", 2), ("Set5", 3), ("Set5", 4)]
    for r in payload["results"]:
        assert {"dataset", "scale", "psnr", "ssim", "images", "seconds", "protocol"} <= set(r)
        assert [i["name"] for i in r["images"]] == ["baby", "bird", "butterfly", "head", "woman"]
        assert all(set(i) == {"name", "psnr", "ssim"} for i in r["images"])
        assert r["psnr"] == pytest.approx(np.mean([i["psnr"] for i in r["images"]]))


def test_a_missing_set_is_a_one_line_error_with_exit_2(tmp_path, capsys):
    os.makedirs(tmp_path / "Empty" / "HR")
    code = cli.main(
        ["eval", "--data-dir", str(tmp_path), "--datasets", "Nope", "--scales", "2", "--method", "bicubic"]
    )
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Nope" in err and err.startswith("edsr-jax eval: error: ")


def test_eval_with_a_checkpoint_and_a_scale_it_lacks(set5_dir, tmp_path, capsys):
    model = models.EDSR(scale=2, num_blocks=1, num_features=4)
    exported.save_model(str(tmp_path / "model"), model, numpy_init(model))
    copy_hr(set5_dir, tmp_path / "data" / "Tiny", names=("butterfly",))
    args = [
        "eval",
        "--data-dir",
        str(tmp_path / "data"),
        "--datasets",
        "Tiny",
        "--checkpoint",
        str(tmp_path / "model"),
        "--no-progress",
        "--json",
        str(tmp_path / "r.json"),
        "--force",  # (each run replaces the JSON of the one before)
    ]
    assert cli.main(args + ["--scales", "2", "--tile", "40"]) == 0
    (result,) = json.load(open(tmp_path / "r.json"))["results"]
    assert result["scale"] == 2 and len(result["images"]) == 1 and result["psnr"] > 5
    assert cli.main(args) == 0  # without --scales: the model's scales
    (default,) = json.load(open(tmp_path / "r.json"))["results"]
    assert default["scale"] == 2 and default["psnr"] == pytest.approx(result["psnr"], abs=1e-3)
    capsys.readouterr()
    assert cli.main(args + ["--scales", "2,3"]) == 2
    assert "upscales by x2 only, not x3" in capsys.readouterr().err


def test_eval_json_is_strict_when_a_psnr_is_infinite(tmp_path):
    # A constant image: bicubic gives back the HR exactly, so its PSNR is infinite.
    os.makedirs(tmp_path / "data" / "Flat" / "HR")
    Image.fromarray(np.full((24, 20, 3), 77, np.uint8)).save(tmp_path / "data" / "Flat" / "HR" / "flat.png")
    path = str(tmp_path / "r.json")
    args = [
        "--data-dir",
        str(tmp_path / "data"),
        "--datasets",
        "Flat",
        "--scales",
        "2",
        "--method",
        "bicubic",
    ]
    assert cli.main(["eval", *args, "--json", path, "--no-progress"]) == 0
    with open(path) as f:
        data = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    (result,) = data["results"]
    assert result["psnr"] is None and result["images"][0]["psnr"] is None
    assert result["ssim"] == pytest.approx(1.0)
    # The writer the command uses: every non-finite float becomes null.
    atomic.write_json(path, {"results": [{"psnr": float("inf"), "images": [{"psnr": 30.5}]}]})
    with open(path) as f:
        data = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert data == {"results": [{"psnr": None, "images": [{"psnr": 30.5}]}]}


def test_skip_bad_scores_the_readable_images_and_lists_the_others(tmp_path, capsys):
    from support.cases import make_set_with_a_truncated_image

    root = str(tmp_path / "bench")
    make_set_with_a_truncated_image(root)
    out = str(tmp_path / "r.json")
    args = ["--data-dir", root, "--datasets", "Set5", "--scales", "2", "--method", "bicubic", "--no-progress"]
    assert cli.main(["eval", *args, "--skip-bad", "--json", out]) == 0
    table = capsys.readouterr().out
    assert "1 (+1 skipped)" in table and "skipped Set5 x2 half_copied: cannot decode image" in table
    (result,) = json.load(open(out))["results"]
    assert [i["name"] for i in result["images"]] == ["good"]
    assert [s["name"] for s in result["skipped"]] == ["half_copied"] and "half_copied.png" in result[
        "skipped"
    ][0]["error"]


@pytest.mark.usefixtures("compilation_cache")
def test_eval_scores_a_runs_ema_weights_unless_told_raw(set5_dir, cache_dir, tmp_path):
    from support.configs import tiny_config

    from edsr_jax import train

    workdir = str(tmp_path / "run")
    train.train_and_evaluate(tiny_config(cache_dir, num_train_steps=2, ema_decay=0.5), workdir)
    copy_hr(set5_dir, tmp_path / "data" / "Tiny", names=("butterfly",))
    args = ["eval", "--data-dir", str(tmp_path / "data"), "--datasets", "Tiny", "--checkpoint", workdir]
    scores = {}
    for weights in ("auto", "ema", "raw"):
        out = tmp_path / f"{weights}.json"
        assert cli.main(args + ["--no-progress", "--weights", weights, "--json", str(out)]) == 0
        payload = json.load(open(out))
        assert payload["weights"] == weights
        scores[weights] = payload["results"][0]["psnr"]
    assert scores["auto"] == scores["ema"] != scores["raw"]
