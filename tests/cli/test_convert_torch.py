"""``edsr-jax convert-torch``: the written model equals the library's conversion, its metadata and
summary, refusing a non-empty output folder, and one-line errors with exit 2."""

import json
import os

import numpy as np
import pytest
from support.optional import import_torch

torch = import_torch()  # (skips the module where PyTorch is not installed)

from support import torch_reference as ref  # noqa: E402
from support.trees import assert_trees_equal  # noqa: E402

import edsr_jax  # noqa: E402
from edsr_jax import cli, models  # noqa: E402
from edsr_jax.interop import torch as torch_interop  # noqa: E402


# (arch, scale, num_blocks, num_features, res_scale, how the file wraps the state dict)
def _convert_cli(file, out, *extra):
    return cli.main(["convert-torch", str(file), "--out", str(out), *extra])


@pytest.mark.parametrize("arch,scale,num_blocks,num_features,res_scale,wrap", ref.CONVERSIONS)
def test_the_written_model_loads_as_the_library_conversion(
    tmp_path, arch, scale, num_blocks, num_features, res_scale, wrap
):
    # (tests/interop/test_torch.py checks the library's conversion against PyTorch's outputs)
    net = ref.randomized(arch, scale, num_blocks, num_features, res_scale)
    ref.save_weights(net, tmp_path / "weights.pt", wrap)
    extra = ["--res-scale", str(res_scale)] if res_scale != 1.0 else []
    assert _convert_cli(tmp_path / "weights.pt", tmp_path / "model", *extra) == 0

    model, variables = edsr_jax.load_model(tmp_path / "model")
    scales = (scale,) if isinstance(scale, int) else scale
    assert model.scales == scales
    assert (model.num_blocks, model.num_features, model.res_scale) == (num_blocks, num_features, res_scale)
    state_dict = {k: v.numpy() for k, v in net.state_dict().items()}
    spec = {**torch_interop.infer_spec(state_dict), "res_scale": res_scale}
    library_model, library = torch_interop.convert_state_dict(state_dict, spec)
    assert models.model_spec(model) == models.model_spec(library_model)
    assert_trees_equal(variables, library)


def test_convert_torch_writes_metadata_and_summary(tmp_path, capsys):
    net = ref.randomized("edsr", 2, 1, 4)
    torch.save(net.state_dict(), tmp_path / "edsr_tiny_x2.pt")
    assert _convert_cli(tmp_path / "edsr_tiny_x2.pt", tmp_path / "out") == 0
    summary = capsys.readouterr().out
    n_params = sum(v.numel() for k, v in net.state_dict().items() if "mean" not in k)
    assert "edsr x2, B1, F4, res_scale 1" in summary and f"{n_params:,} parameters" in summary
    document = json.loads((tmp_path / "out" / "model.json").read_text())
    assert document["spec"] == {
        "arch": "edsr",
        "scale": 2,
        "num_blocks": 1,
        "num_features": 4,
        "res_scale": 1.0,
    }
    assert document["metadata"]["source"] == "edsr_tiny_x2.pt"
    assert len(document["metadata"]["source_sha256_prefix"]) == 16
    assert document["metadata"]["inferred_spec"] == document["spec"]


def test_convert_torch_says_when_it_folds_another_rgb_range(tmp_path, capsys):
    net = ref.with_mean_shift(ref.randomized("edsr", 2, 1, 4), rgb_range=1.0)
    torch.save(net.state_dict(), tmp_path / "range1.pt")
    assert _convert_cli(tmp_path / "range1.pt", tmp_path / "out") == 0
    assert (
        "trained with rgb_range 1, rgb_std 1, 1, 1: folded into the head and tail" in capsys.readouterr().out
    )
    metadata = json.loads((tmp_path / "out" / "model.json").read_text())["metadata"]
    assert metadata["mean_shift"]["rgb_range"] == pytest.approx(1.0, rel=1e-6)
    torch.save(ref.randomized("edsr", 2, 1, 4).state_dict(), tmp_path / "standard.pt")
    assert _convert_cli(tmp_path / "standard.pt", tmp_path / "out2") == 0
    assert "rgb_range" not in capsys.readouterr().out
    metadata = json.loads((tmp_path / "out2" / "model.json").read_text())["metadata"]
    assert metadata["mean_shift"] == {"rgb_range": 255.0, "rgb_std": [1.0, 1.0, 1.0]}


def test_convert_torch_force_replaces_only_an_earlier_converted_model(tmp_path, capsys):
    torch.save(ref.randomized("edsr", 2, 1, 4).state_dict(), tmp_path / "w.pt")
    torch.save(ref.randomized("edsr", 3, 1, 4).state_dict(), tmp_path / "w3.pt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    for flags in ((), ("--force",)):
        assert _convert_cli(tmp_path / "w.pt", out, *flags) == 2
        assert "keep.txt" in capsys.readouterr().err
        assert sorted(os.listdir(out)) == ["keep.txt"] and (out / "keep.txt").read_text() == "user data"
    model_dir = tmp_path / "model"
    assert _convert_cli(tmp_path / "w.pt", model_dir) == 0
    assert _convert_cli(tmp_path / "w3.pt", model_dir) == 2
    assert "--force" in capsys.readouterr().err and edsr_jax.load_model(model_dir)[0].scale == 2
    assert _convert_cli(tmp_path / "w3.pt", model_dir, "--force") == 0
    assert edsr_jax.load_model(model_dir)[0].scale == 3


def _assert_one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("edsr-jax convert-torch: error: ")
    for fragment in fragments:
        assert fragment in err, err


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    assert _convert_cli(tmp_path / "list.pt", tmp_path / "o") == 2
    _assert_one_line_error(capsys, "list.pt", "does not hold a state dict", "a list")

    torch.save({"epoch": 3, "optimizer": {"lr": 1e-4}}, tmp_path / "dict.pt")
    assert _convert_cli(tmp_path / "dict.pt", tmp_path / "o") == 2
    _assert_one_line_error(capsys, "dict.pt", "'epoch': int")

    (tmp_path / "text.pt").write_text("not a torch file\n")
    assert _convert_cli(tmp_path / "text.pt", tmp_path / "o") == 2
    _assert_one_line_error(capsys, "text.pt", "is a text file", "not PyTorch weights")

    tiny_state_dict = {k: v.numpy() for k, v in ref.randomized("edsr", 2, 2, 8).state_dict().items()}
    tiny_state_dict["head.0.weight"] = np.zeros((8, 3, 5, 5), np.float32)
    torch.save({k: torch.from_numpy(v) for k, v in tiny_state_dict.items()}, tmp_path / "bad.pt")
    assert _convert_cli(tmp_path / "bad.pt", tmp_path / "o") == 2
    _assert_one_line_error(capsys, "head.0.weight", "(8, 3, 5, 5)", "(8, 3, 3, 3)")
    assert not (tmp_path / "o").exists()
