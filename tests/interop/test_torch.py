"""Official PyTorch weights -> edsr-jax (convert-torch), the exported-model format, and their errors.

The PyTorch side is ``tests/torch_reference.py``: an independent EDSR/MDSR with the official
state-dict key names and random weights (random biases too).
"""

import json
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch_reference as ref

import edsr_jax
from edsr_jax import checkpoint, cli, convert, models
from edsr_jax.errors import UserError

# Outputs are on [0, 255]; the acceptance tolerance.
TOLERANCE = 1e-3
# A small LR batch with odd, non-square sizes (catches H/W swaps in kernels and pixel shuffle).
LR = np.random.RandomState(0).uniform(0, 255, (2, 11, 9, 3)).astype(np.float32)


def _reference(arch, scale, num_blocks, num_features, res_scale=1.0, seed=0):
    return ref.randomize_(ref.build_model(arch, scale, num_blocks, num_features, res_scale), seed)


def _state_dict(net):
    return {k: v.numpy() for k, v in net.state_dict().items()}


def _convert_cli(file, out, *extra):
    return cli.main(["convert-torch", str(file), "--out", str(out), *extra])


# --- PyTorch vs JAX outputs after convert-torch -> load_model ------------------------------------


@pytest.mark.parametrize(
    "arch,scale,num_blocks,num_features,res_scale,wrap",
    [
        ("edsr", 2, 2, 8, 1.0, None),
        ("edsr", 3, 2, 8, 1.0, "state_dict"),
        ("edsr", 4, 1, 8, 1.0, "model"),
        ("edsr", 2, 3, 16, 0.1, None),
        ("mdsr", (2, 3, 4), 2, 8, 1.0, "module."),
    ],
)
def test_converted_model_matches_pytorch(tmp_path, arch, scale, num_blocks, num_features, res_scale, wrap):
    net = _reference(arch, scale, num_blocks, num_features, res_scale)
    state = net.state_dict()
    if wrap == "module.":  # DataParallel prefix
        state = {f"module.{k}": v for k, v in state.items()}
    elif wrap:
        state = {wrap: state, "epoch": 3}
    torch.save(state, tmp_path / "weights.pt")
    extra = ["--res-scale", str(res_scale)] if res_scale != 1.0 else []
    assert _convert_cli(tmp_path / "weights.pt", tmp_path / "model", *extra) == 0

    model, variables = edsr_jax.load_model(tmp_path / "model")
    scales = (scale,) if isinstance(scale, int) else scale
    assert models.model_scales(model) == scales
    assert (model.num_blocks, model.num_features, model.res_scale) == (num_blocks, num_features, res_scale)
    for index, s in enumerate(scales):
        expected = ref.run(net, LR, index)
        assert np.ptp(expected) > 50  # non-trivial weights: a wrong mapping cannot hide
        got = np.asarray(model.apply(variables, jnp.asarray(LR), scale=s))
        assert got.shape == expected.shape == (2, 11 * s, 9 * s, 3)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


def test_convert_torch_writes_metadata_and_summary(tmp_path, capsys):
    net = _reference("edsr", 2, 1, 4)
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


def test_convert_torch_refuses_non_empty_out_unless_forced(tmp_path, capsys):
    torch.save(_reference("edsr", 2, 1, 4).state_dict(), tmp_path / "w.pt")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    assert _convert_cli(tmp_path / "w.pt", out) == 2
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert _convert_cli(tmp_path / "w.pt", out, "--force") == 0
    assert not (out / "keep.txt").exists()
    assert edsr_jax.load_model(out)[0].scale == 2


# --- the 8 official models, structurally (shapes only, nothing allocated or run) ----------------

OFFICIAL = {  # official file stem -> (preset call, reference args, REFERENCE parameter count)
    "edsr_baseline_x2": (lambda: models.edsr_baseline(2), ("edsr", 2, 16, 64, 1.0), 1_369_859),
    "edsr_baseline_x3": (lambda: models.edsr_baseline(3), ("edsr", 3, 16, 64, 1.0), 1_554_499),
    "edsr_baseline_x4": (lambda: models.edsr_baseline(4), ("edsr", 4, 16, 64, 1.0), 1_517_571),
    "edsr_x2": (lambda: models.edsr(2), ("edsr", 2, 32, 256, 0.1), 40_729_603),
    "edsr_x3": (lambda: models.edsr(3), ("edsr", 3, 32, 256, 0.1), 43_680_003),
    "edsr_x4": (lambda: models.edsr(4), ("edsr", 4, 32, 256, 0.1), 43_089_923),
    "mdsr_baseline": (models.mdsr_baseline, ("mdsr", (2, 3, 4), 16, 64, 1.0), 3_227_203),
    "mdsr": (models.mdsr, ("mdsr", (2, 3, 4), 80, 64, 1.0), 7_953_987),
}


def _shape_only_state_dict(arch, scale, num_blocks, num_features, res_scale):
    """Official keys and shapes at full size, as zero-stride zeros (no memory); real mean shift."""
    with torch.device("meta"):
        net = ref.build_model(arch, scale, num_blocks, num_features, res_scale)
    means = {
        f"{name}.{k}": v.numpy()
        for name, sign in (("sub_mean", -1), ("add_mean", 1))
        for k, v in ref.MeanShift(sign).state_dict().items()
    }
    return {
        k: means.get(k, np.broadcast_to(np.float32(0), tuple(v.shape))) for k, v in net.state_dict().items()
    }


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_official_architectures_infer_and_map_at_full_size(name):
    preset, reference_args, count = OFFICIAL[name]
    state_dict = _shape_only_state_dict(*reference_args)
    spec = convert.infer_spec(state_dict)
    assert spec == models.model_spec(preset())  # including res_scale 0.1 for the full EDSR only
    model, variables = convert.convert_state_dict(state_dict)
    assert checkpoint.flatten_shapes(variables["params"]) == checkpoint.expected_param_shapes(preset())
    assert models.count_params(variables["params"]) == count


def test_kernels_are_transposed_oihw_to_hwio():
    state_dict = _state_dict(_reference("edsr", 2, 1, 4))
    _, variables = convert.convert_state_dict(state_dict)
    w = state_dict["body.0.body.2.weight"]  # (O, I, H, W)
    np.testing.assert_array_equal(
        variables["params"]["block_0"]["conv2"]["kernel"][1, 2, 3, 0], w[0, 3, 1, 2]
    )
    np.testing.assert_array_equal(
        variables["params"]["upsample"]["conv_0"]["bias"], state_dict["tail.0.0.bias"]
    )


# --- converter errors ---------------------------------------------------------------------------


@pytest.fixture
def tiny_state_dict():
    return _state_dict(_reference("edsr", 2, 2, 8))


def test_unknown_keys_are_listed(tiny_state_dict):
    tiny_state_dict["body.0.body.1.weight"] = np.zeros((8, 8, 3, 3), np.float32)
    with pytest.raises(UserError, match=r"unknown keys .*body\.0\.body\.1\.weight"):
        convert.convert_state_dict(tiny_state_dict)


def test_missing_keys_are_listed(tiny_state_dict):
    del tiny_state_dict["tail.1.bias"], tiny_state_dict["body.2.weight"]
    with pytest.raises(UserError, match=r"missing keys .*body\.2\.weight, tail\.1\.bias"):
        convert.convert_state_dict(tiny_state_dict)


def test_shape_mismatch_names_key_and_both_shapes(tiny_state_dict):
    tiny_state_dict["body.1.body.2.weight"] = np.zeros((8, 8, 5, 5), np.float32)
    with pytest.raises(
        UserError, match=r"body\.1\.body\.2\.weight has shape \(8, 8, 5, 5\).*needs \(8, 8, 3, 3\)"
    ):
        convert.convert_state_dict(tiny_state_dict)


def test_upsampler_with_impossible_width_is_rejected(tiny_state_dict):
    tiny_state_dict["tail.0.0.weight"] = np.zeros((40, 8, 3, 3), np.float32)
    with pytest.raises(UserError, match=r"tail\.0\.0\.weight has 40 output channels"):
        convert.infer_spec(tiny_state_dict)


def test_mean_shift_other_than_div2k_warns_and_wrong_shape_fails(tiny_state_dict):
    div2k_bias = tiny_state_dict["sub_mean.bias"]
    tiny_state_dict["sub_mean.bias"] = div2k_bias / 255.0  # an rgb_range 1 model
    with pytest.warns(UserWarning, match="sub_mean.bias"):
        convert.convert_state_dict(tiny_state_dict)
    tiny_state_dict["sub_mean.bias"] = div2k_bias
    tiny_state_dict["add_mean.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(UserError, match=r"add_mean\.weight has shape \(3, 3\)"):
        convert.convert_state_dict(tiny_state_dict)


def _assert_one_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("edsr-jax convert-torch: error: ")
    for fragment in fragments:
        assert fragment in err, err


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, tiny_state_dict):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    assert _convert_cli(tmp_path / "list.pt", tmp_path / "o") == 2
    _assert_one_line_error(capsys, "list.pt", "does not hold a state dict", "a list")

    torch.save({"epoch": 3, "optimizer": {"lr": 1e-4}}, tmp_path / "dict.pt")
    assert _convert_cli(tmp_path / "dict.pt", tmp_path / "o") == 2
    _assert_one_line_error(capsys, "dict.pt", "'epoch': int")

    (tmp_path / "text.pt").write_text("not a torch file\n")
    assert _convert_cli(tmp_path / "text.pt", tmp_path / "o") == 2
    _assert_one_line_error(capsys, "text.pt", "not a readable PyTorch file")

    tiny_state_dict["head.0.weight"] = np.zeros((8, 3, 5, 5), np.float32)
    torch.save({k: torch.from_numpy(v) for k, v in tiny_state_dict.items()}, tmp_path / "bad.pt")
    assert _convert_cli(tmp_path / "bad.pt", tmp_path / "o") == 2
    _assert_one_line_error(capsys, "head.0.weight", "(8, 3, 5, 5)", "(8, 3, 3, 3)")
    assert not (tmp_path / "o").exists()


def test_missing_torch_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "w.pt").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(UserError, match=r"pip install torch==2\.13\.0"):
        convert.load_torch_state_dict(tmp_path / "w.pt")


# --- the exported-model format: round trip, atomic save, load errors ----------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny MDSR saved with save_model: (directory, model, variables)."""
    model = models.MDSR(scales=(2, 4), num_blocks=1, num_features=4)
    rng = np.random.default_rng(1)
    params = {}
    for path, shape in checkpoint.expected_param_shapes(model).items():
        *modules, leaf = path.split("/")
        node = params
        for name in modules:
            node = node.setdefault(name, {})
        node[leaf] = rng.standard_normal(shape, np.float32)
    variables = {"params": params}
    directory = tmp_path_factory.mktemp("saved") / "model"
    checkpoint.save_model(directory, model, variables, metadata={"note": "round trip"})
    return directory, model, variables


def test_save_load_round_trip_is_bit_exact(saved):
    directory, model, variables = saved
    loaded_model, loaded = edsr_jax.load_model(directory)
    assert models.model_spec(loaded_model) == models.model_spec(model)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(variables)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(variables), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert json.loads((directory / "model.json").read_text())["metadata"] == {"note": "round trip"}
    assert edsr_jax.load_model(directory / "model.json", dtype=jnp.bfloat16)[0].dtype == jnp.bfloat16


def test_interrupted_save_leaves_nothing_that_loads(tmp_path, monkeypatch, saved):
    _, model, variables = saved

    def crash(*args):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(checkpoint, "_write_model_json", crash)
    monkeypatch.setattr(checkpoint, "_discard", lambda path: None)  # as if the process died
    with pytest.raises(RuntimeError, match="simulated crash"):
        checkpoint.save_model(tmp_path / "model", model, variables)
    assert not (tmp_path / "model").exists()
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".model.tmp-") and (leftover / "params").is_dir()
    with pytest.raises(UserError, match="no model.json"):
        edsr_jax.load_model(leftover)


def test_save_refuses_non_empty_directory_and_bad_params(tmp_path, saved):
    _, model, variables = saved
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(UserError, match="not empty"):
        checkpoint.save_model(tmp_path, model, variables)
    wrong = models.MDSR(scales=(2, 3), num_blocks=1, num_features=4)
    with pytest.raises(UserError, match=r"lack pre_process_x3_0/conv1/bias"):
        checkpoint.save_model(tmp_path / "m", wrong, variables)
    assert not (tmp_path / "m").exists()


def _copy(saved, tmp_path):
    return shutil.copytree(saved[0], tmp_path / "copy")


def test_load_errors_are_clear(tmp_path, saved):
    with pytest.raises(UserError, match="does not exist"):
        edsr_jax.load_model(tmp_path / "nothing")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(UserError, match=r"w\.pt is a file.*convert-torch"):
        edsr_jax.load_model(tmp_path / "w.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="directory is empty"):
        edsr_jax.load_model(tmp_path / "empty")
    with pytest.raises(UserError, match=r"no model.json in it \(found empty, w\.pt\)"):
        edsr_jax.load_model(tmp_path / "empty" / "..")
    (tmp_path / "workdir" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="looks like a training workdir"):
        edsr_jax.load_model(tmp_path / "workdir")


def test_load_rejects_corrupt_json_missing_params_and_wrong_shapes(tmp_path, saved):
    copy = _copy(saved, tmp_path)
    good = (copy / "model.json").read_text()
    (copy / "model.json").write_text(good[: len(good) // 2])
    with pytest.raises(UserError, match="corrupt"):
        edsr_jax.load_model(copy)

    document = json.loads(good)
    document["spec"]["num_features"] = 6
    (copy / "model.json").write_text(json.dumps(document))
    with pytest.raises(UserError, match=r"block_0/conv1/bias has shape \(4,\) but .* needs \(6,\)"):
        edsr_jax.load_model(copy)

    (copy / "model.json").write_text(good)
    (copy / "params" / "manifest.ocdbt").unlink()
    with pytest.raises(UserError, match="are incomplete: manifest.ocdbt missing"):
        edsr_jax.load_model(copy)
    shutil.rmtree(copy / "params")
    with pytest.raises(UserError, match="no params/"):
        edsr_jax.load_model(copy)
