"""Benchmark folders, image I/O, the evaluation loop and the eval/downscale commands."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import BENCHMARKS, require_shared
from PIL import Image

from edsr_jax import benchmarks, cli, evaluate, imageio, inference, metrics, models
from edsr_jax.errors import UserError

# The paper protocol's Set5 Bicubic row (REFERENCE section 6): scale -> (PSNR, SSIM).
SET5_BICUBIC = {2: (33.67, 0.9303), 3: (30.40, 0.8689), 4: (28.43, 0.8111)}


@pytest.fixture(scope="module")
def bicubic_run(tmp_path_factory):
    """``edsr-jax eval --method bicubic`` on Set5 x2/x3/x4, once per session: (exit code, JSON)."""
    require_shared(os.path.join(BENCHMARKS, "Set5"))
    out = str(tmp_path_factory.mktemp("eval") / "bicubic.json")
    code = cli.main(["eval", "--data-dir", BENCHMARKS, "--datasets", "Set5", "--scales", "2,3,4",
                     "--method", "bicubic", "--json", out, "--no-progress"])
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


def _copy_hr(set5_dir, dest, names=("bird", "head")):
    os.makedirs(os.path.join(dest, "HR"))
    for n in names:
        shutil.copy(os.path.join(set5_dir, "HR", f"{n}.png"), os.path.join(dest, "HR", f"{n}.png"))


def test_missing_lr_files_are_generated_matlab_exactly(set5_dir, tmp_path):
    _copy_hr(set5_dir, tmp_path / "Mine")
    samples = benchmarks.load_benchmark(str(tmp_path), "Mine", 3)
    assert [s.name for s in samples] == ["bird", "head"]
    for s in samples:
        real = imageio.read_image(os.path.join(set5_dir, "LR_bicubic", "X3", f"{s.name}x3.png"))
        assert s.lr_generated
        np.testing.assert_array_equal(s.lr, real)
        assert s.hr.shape == (real.shape[0] * 3, real.shape[1] * 3, 3)


def test_existing_lr_files_are_used_and_hr_is_cropped(set5_dir):
    samples = benchmarks.load_benchmark(os.path.dirname(set5_dir), "Set5", 3, boundary="mirror")
    woman = samples[-1]
    assert woman.name == "woman" and not woman.lr_generated
    assert woman.lr.shape == (114, 76, 3) and woman.hr.shape == (342, 228, 3)  # HR is 344x228


def test_grayscale_images_are_replicated(tmp_path):
    os.makedirs(tmp_path / "Gray" / "HR")
    gray = (np.arange(24 * 18) % 251).astype(np.uint8).reshape(24, 18)
    Image.fromarray(gray, "L").save(tmp_path / "Gray" / "HR" / "g.png")
    (s,) = benchmarks.load_benchmark(str(tmp_path), "Gray", 2)
    assert s.hr.shape == (24, 18, 3) and s.lr.shape == (12, 9, 3)
    np.testing.assert_array_equal(s.hr[..., 0], gray)
    np.testing.assert_array_equal(s.hr[..., 2], gray)


def test_missing_or_empty_sets_name_the_folder(tmp_path):
    os.makedirs(tmp_path / "Empty" / "HR")
    with pytest.raises(UserError, match="Nope"):
        benchmarks.load_benchmark(str(tmp_path), "Nope", 2)
    with pytest.raises(UserError, match=r"Empty.HR"):
        benchmarks.load_benchmark(str(tmp_path), "Empty", 2)
    args = ["--datasets", "Nope", "--scales", "2", "--method", "bicubic"]
    code = cli.main(["eval", "--data-dir", str(tmp_path), *args])
    assert code == 2


def test_bad_image_files_are_user_errors_naming_the_file(tmp_path, set5_dir):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    data = open(os.path.join(set5_dir, "HR", "bird.png"), "rb").read()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    for name, pattern in (("missing.png", "not found"), ("empty.png", "empty"), ("text.png", "not an image"),
                          ("cut.png", "cannot decode")):
        with pytest.raises(UserError, match=pattern) as info:
            imageio.read_image(str(tmp_path / name))
        assert name in str(info.value)


def test_write_image_is_atomic_and_round_trips(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    path = tmp_path / "out.png"
    imageio.write_image(str(path), img)
    np.testing.assert_array_equal(imageio.read_image(str(path)), img)
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary file left
    raw = imageio.load_raw(str(path))
    assert raw.mode == "RGB"
    with pytest.raises(UserError, match="float64"):
        imageio.write_image(str(tmp_path / "bad.png"), img.astype(float))
    assert os.listdir(tmp_path) == ["out.png"]


def test_evaluate_images_with_a_model_upscaler(set5_dir):
    model = models.EDSR(scale=4, num_blocks=1, num_features=4)
    from test_inference import numpy_init

    up = inference.make_upscaler(model, numpy_init(model), 4)
    samples = benchmarks.load_benchmark(os.path.dirname(set5_dir), "Set5", 4)[1:3]
    res = evaluate.evaluate_images(up, samples, scale=4, protocol=metrics.BENCHMARK)
    assert [i["name"] for i in res["images"]] == ["bird", "butterfly"]
    assert 0 < res["psnr"] < 40 and res["seconds"] > 0
    with pytest.raises(UserError, match="expected"):
        evaluate.evaluate_images(evaluate.bicubic(2), samples, scale=4)


def test_downscale_command_writes_edsr_names_bit_exact(set5_dir, tmp_path):
    src = tmp_path / "hr"
    _copy_hr(set5_dir, src, names=("bird", "woman"))
    out = tmp_path / "lr" / "X4"
    assert cli.main(["downscale", "--scale", "4", str(src / "HR"), str(out)]) == 0
    assert sorted(os.listdir(out)) == ["birdx4.png", "womanx4.png"]
    for n in ("bird", "woman"):
        real = imageio.read_image(os.path.join(set5_dir, "LR_bicubic", "X4", f"{n}x4.png"))
        np.testing.assert_array_equal(imageio.read_image(str(out / f"{n}x4.png")), real)
    single = tmp_path / "single"
    hr = str(src / "HR" / "bird.png")
    assert cli.main(["downscale", "--scale", "2", "--boundary", "mirror", hr, str(single) + os.sep]) == 0
    real = imageio.read_image(os.path.join(set5_dir, "LR_bicubic_edsrpkg", "X2", "birdx2.png"))
    np.testing.assert_array_equal(imageio.read_image(str(single / "birdx2.png")), real)
    assert cli.main(["downscale", "--scale", "2", str(tmp_path / "nothing.png"), str(single)]) == 2


def test_eval_with_a_checkpoint_and_a_scale_it_lacks(set5_dir, tmp_path, capsys):
    from test_inference import numpy_init

    from edsr_jax import checkpoint

    model = models.EDSR(scale=2, num_blocks=1, num_features=4)
    checkpoint.save_model(str(tmp_path / "model"), model, numpy_init(model))
    _copy_hr(set5_dir, tmp_path / "data" / "Tiny", names=("butterfly",))
    args = ["eval", "--data-dir", str(tmp_path / "data"), "--datasets", "Tiny", "--checkpoint",
            str(tmp_path / "model"), "--no-progress", "--json", str(tmp_path / "r.json")]
    assert cli.main(args + ["--scales", "2", "--tile", "40"]) == 0
    (result,) = json.load(open(tmp_path / "r.json"))["results"]
    assert result["scale"] == 2 and len(result["images"]) == 1 and result["psnr"] > 5
    assert cli.main(args + ["--scales", "2,3"]) == 2
    assert "x2 only" in capsys.readouterr().err


def test_eval_json_is_strict_when_a_psnr_is_infinite(tmp_path):
    from edsr_jax.commands import eval as eval_command

    path = str(tmp_path / "r.json")
    eval_command._write_json(path, {"results": [{"psnr": float("inf"), "images": [{"psnr": 30.5}]}]})
    with open(path) as f:
        data = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert data == {"results": [{"psnr": None, "images": [{"psnr": 30.5}]}]}
