"""Official PyTorch weights -> edsr-jax (edsr_jax.interop.torch): outputs equal to PyTorch's, the
8 official architectures at full size, OIHW -> HWIO, and the converter's errors.

The PyTorch side is ``tests/support/torch_reference.py``: an independent EDSR/MDSR with the
official state-dict key names and random weights (random biases too).
"""

import sys

import jax.numpy as jnp
import numpy as np
import pytest
from support.optional import import_torch

torch = import_torch()  # (skips the module where PyTorch is not installed)

from support import torch_reference as ref  # noqa: E402

from edsr_jax import models  # noqa: E402
from edsr_jax.errors import UserError  # noqa: E402
from edsr_jax.interop import torch as torch_interop  # noqa: E402

# Outputs are on [0, 255]; the acceptance tolerance.
TOLERANCE = 1e-3
# A small LR batch with odd, non-square sizes (catches H/W swaps in kernels and pixel shuffle).
LR = np.random.RandomState(0).uniform(0, 255, (2, 11, 9, 3)).astype(np.float32)


# (arch, scale, num_blocks, num_features, res_scale, how the file wraps the state dict)
def _state_dict(net):
    return {k: v.numpy() for k, v in net.state_dict().items()}


# --- PyTorch vs JAX outputs after reading the file and converting -------------------------------


@pytest.mark.parametrize("arch,scale,num_blocks,num_features,res_scale,wrap", ref.CONVERSIONS)
def test_converted_model_matches_pytorch(tmp_path, arch, scale, num_blocks, num_features, res_scale, wrap):
    net = ref.randomized(arch, scale, num_blocks, num_features, res_scale)
    ref.save_weights(net, tmp_path / "weights.pt", wrap)
    state_dict = torch_interop.load_torch_state_dict(tmp_path / "weights.pt")
    assert set(state_dict) == set(net.state_dict())  # wrapper and module. prefix removed
    spec = torch_interop.infer_spec(state_dict)
    assert spec["res_scale"] == 1.0  # (res_scale is not in the weights: set explicitly below)
    model, variables = torch_interop.convert_state_dict(state_dict, {**spec, "res_scale": res_scale})

    scales = (scale,) if isinstance(scale, int) else scale
    assert model.scales == scales
    assert (model.num_blocks, model.num_features, model.res_scale) == (num_blocks, num_features, res_scale)
    for index, s in enumerate(scales):
        expected = ref.run(net, LR, index)
        assert np.ptp(expected) > 50  # non-trivial weights: a wrong mapping cannot hide
        got = np.asarray(model.apply(variables, jnp.asarray(LR), scale=s))
        assert got.shape == expected.shape == (2, 11 * s, 9 * s, 3)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)


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
    spec = torch_interop.infer_spec(state_dict)
    assert spec == models.model_spec(preset())  # including res_scale 0.1 for the full EDSR only
    model, variables = torch_interop.convert_state_dict(state_dict)
    shapes = {k: tuple(v.shape) for k, v in models.flat_params(variables["params"]).items()}
    assert shapes == models.param_shapes(preset())
    assert models.count_params(variables["params"]) == count


def test_kernels_are_transposed_oihw_to_hwio():
    state_dict = _state_dict(ref.randomized("edsr", 2, 1, 4))
    _, variables = torch_interop.convert_state_dict(state_dict)
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
    return _state_dict(ref.randomized("edsr", 2, 2, 8))


def test_unknown_keys_are_listed(tiny_state_dict):
    tiny_state_dict["body.0.body.1.weight"] = np.zeros((8, 8, 3, 3), np.float32)
    with pytest.raises(UserError, match=r"unknown keys .*body\.0\.body\.1\.weight"):
        torch_interop.convert_state_dict(tiny_state_dict)


def test_missing_keys_are_listed(tiny_state_dict):
    del tiny_state_dict["tail.1.bias"], tiny_state_dict["body.2.weight"]
    with pytest.raises(UserError, match=r"missing keys .*body\.2\.weight, tail\.1\.bias"):
        torch_interop.convert_state_dict(tiny_state_dict)


def test_shape_mismatch_names_key_and_both_shapes(tiny_state_dict):
    tiny_state_dict["body.1.body.2.weight"] = np.zeros((8, 8, 5, 5), np.float32)
    with pytest.raises(
        UserError, match=r"body\.1\.body\.2\.weight has shape \(8, 8, 5, 5\).*needs \(8, 8, 3, 3\)"
    ):
        torch_interop.convert_state_dict(tiny_state_dict)


def test_upsampler_with_impossible_width_is_rejected(tiny_state_dict):
    tiny_state_dict["tail.0.0.weight"] = np.zeros((40, 8, 3, 3), np.float32)
    with pytest.raises(UserError, match=r"tail\.0\.0\.weight has 40 output channels"):
        torch_interop.infer_spec(tiny_state_dict)


# --- mean shifts of other rgb_range / rgb_std: converted exactly, or refused ---------------------


@pytest.mark.parametrize(
    "arch,scale,rgb_range,rgb_std",
    [
        ("edsr", 2, 1.0, (1.0, 1.0, 1.0)),  # an official model trained with --rgb_range 1
        ("edsr", 4, 1.0, (1.0, 1.0, 1.0)),
        ("mdsr", (2, 3, 4), 1.0, (1.0, 1.0, 1.0)),
        ("edsr", 3, 2.0, (0.5, 0.25, 2.0)),  # another range, and a per-channel rgb_std
    ],
)
def test_a_model_of_another_rgb_range_or_std_converts_exactly(arch, scale, rgb_range, rgb_std):
    net = ref.with_mean_shift(ref.randomized(arch, scale, 2, 8), rgb_range, rgb_std)
    state_dict = _state_dict(net)
    assert torch_interop.read_mean_shift(state_dict)[0] == pytest.approx(rgb_range, rel=1e-6)
    model, variables = torch_interop.convert_state_dict(state_dict)
    for index, s in enumerate(model.scales):
        # PyTorch as the official code runs it: inputs on [0, rgb_range], outputs * 255 / rgb_range.
        expected = ref.run(net, LR * np.float32(rgb_range / 255), index) * np.float32(255 / rgb_range)
        assert np.ptp(expected) > 50
        got = np.asarray(model.apply(variables, jnp.asarray(LR), scale=s))
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    # Read as if the shift were the standard one (as the converter did, with a warning), far off.
    _, plain = torch_interop.convert_state_dict({k: v for k, v in state_dict.items() if "_mean." not in k})
    plain_out = np.asarray(model.apply(plain, jnp.asarray(LR), scale=model.scales[0]))
    assert np.abs(plain_out - ref.run(net, LR * np.float32(rgb_range / 255)) * 255 / rgb_range).max() > 10


def test_the_standard_mean_shift_leaves_the_weights_bit_for_bit(tiny_state_dict):
    rgb_range, diagonals = torch_interop.read_mean_shift(tiny_state_dict)
    assert rgb_range == 255.0 and all(np.array_equal(d, np.ones(3)) for d in diagonals.values())
    _, variables = torch_interop.convert_state_dict(tiny_state_dict)
    np.testing.assert_array_equal(
        variables["params"]["head"]["kernel"], tiny_state_dict["head.0.weight"].transpose(2, 3, 1, 0)
    )
    np.testing.assert_array_equal(variables["params"]["tail"]["bias"], tiny_state_dict["tail.1.bias"])


def test_a_mean_shift_no_edsr_jax_model_computes_is_refused_with_what_was_found(tiny_state_dict):
    div2k = np.asarray(ref.DIV2K_RGB_MEAN, np.float32)
    other_mean = dict(tiny_state_dict, **{"sub_mean.bias": -255 * np.float32([0.5, 0.5, 0.5])})
    with pytest.raises(
        UserError,
        match=r"sub_mean\.weight .* and sub_mean\.bias \[-127\.5, -127\.5, -127\.5\] imply rgb_range "
        r"\[284\.\d+, 291\.\d+, 315\.\d+\] for R, G, B \(rgb_std \[1\.0, 1\.0, 1\.0\]\): not one rgb_range",
    ):
        torch_interop.convert_state_dict(other_mean)
    mixing = dict(tiny_state_dict, **{"add_mean.weight": np.ones((3, 3, 1, 1), np.float32)})
    with pytest.raises(
        UserError, match=r"add_mean\.weight \[\[1\.0, 1\.0, 1\.0\].*not an official MeanShift"
    ):
        torch_interop.convert_state_dict(mixing)
    two_ranges = dict(tiny_state_dict, **{"sub_mean.bias": -div2k})  # rgb_range 1 in, 255 out
    with pytest.raises(UserError, match=r"sub_mean implies rgb_range 1 but add_mean 255: the official code"):
        torch_interop.convert_state_dict(two_ranges)
    wrong_shape = dict(tiny_state_dict, **{"add_mean.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(UserError, match=r"add_mean\.weight has shape \(3, 3\)"):
        torch_interop.convert_state_dict(wrong_shape)


def test_files_without_a_state_dict_are_named(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(UserError, match=r"list\.pt does not hold a state dict of tensors \(found a list"):
        torch_interop.load_torch_state_dict(tmp_path / "list.pt")
    (tmp_path / "text.pt").write_text("not a torch file\n")
    with pytest.raises(UserError, match=r"text\.pt is a text file \(17 bytes, starting 'not a torch file'\)"):
        torch_interop.load_torch_state_dict(tmp_path / "text.pt")
    with pytest.raises(UserError, match=r"cannot read PyTorch weights from .*nothing\.pt: it does not exist"):
        torch_interop.load_torch_state_dict(tmp_path / "nothing.pt")


def test_files_are_read_and_converted_without_torch(tmp_path, monkeypatch):
    net = ref.randomized("edsr", 2, 1, 4)
    ref.save_weights(net, tmp_path / "w.pt", "params")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    state_dict = torch_interop.load_torch_state_dict(tmp_path / "w.pt")
    assert state_dict.keys() == net.state_dict().keys()
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(state_dict[key], value.numpy())
    torch_interop.convert_state_dict(state_dict)
