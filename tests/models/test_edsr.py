"""The networks (edsr_jax.models.edsr): parameter counts, structure, pixel-shuffle order, dtypes,
receptive radius."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support.receptive import measured_reach
from support.trees import numpy_init

from edsr_jax import models

edsr_module = importlib.import_module("edsr_jax.models.edsr")  # (models.edsr is the preset)

# REFERENCE section 1: exact parameter counts (mean shift excluded).
PARAM_COUNTS = {
    ("edsr_baseline", 2): 1_369_859,
    ("edsr_baseline", 3): 1_554_499,
    ("edsr_baseline", 4): 1_517_571,
    ("edsr", 2): 40_729_603,
    ("edsr", 3): 43_680_003,
    ("edsr", 4): 43_089_923,
    ("mdsr_baseline", None): 3_227_203,
    ("mdsr", None): 7_953_987,
}


@pytest.mark.parametrize("preset,scale", list(PARAM_COUNTS))
def test_parameter_counts_match_reference(preset, scale):
    model = getattr(models, preset)(scale) if scale else getattr(models, preset)()
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))
    assert models.count_params(shapes["params"]) == PARAM_COUNTS[(preset, scale)]
    assert set(shapes) == {"params"}  # mean shift is a constant, not a variable


def test_pixel_shuffle_matches_pytorch_order_by_hand():
    # 1x1 image, 2*2*2 channels: PyTorch puts channel c*r*r + i*r + j at (i, j) of output channel c.
    r, c = 2, 2
    x = jnp.arange(c * r * r, dtype=jnp.float32).reshape(1, 1, 1, c * r * r)
    y = models.pixel_shuffle(x, r)
    assert y.shape == (1, 2, 2, 2)
    expected = np.array([[[0, 4], [1, 5]], [[2, 6], [3, 7]]], np.float32)  # [i][j][c]
    np.testing.assert_array_equal(np.asarray(y[0]), expected)


def test_pixel_shuffle_general_formula():
    r, c, h, w = 3, 2, 2, 3
    x = np.random.default_rng(0).normal(size=(1, h, w, c * r * r)).astype(np.float32)
    y = np.asarray(models.pixel_shuffle(jnp.asarray(x), r))
    for cc in range(c):
        for i in range(r):
            for j in range(r):
                np.testing.assert_array_equal(y[0, i::r, j::r, cc], x[0, :, :, cc * r * r + i * r + j])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_output_shape_and_range_convention(scale):
    model = models.EDSR(scale=scale, num_blocks=2, num_features=8)
    variables = models.init(model, jax.random.key(0))
    x = jnp.full((2, 5, 7, 3), 128.0)
    y = model.apply(variables, x)
    assert y.shape == (2, 5 * scale, 7 * scale, 3) and y.dtype == jnp.float32
    assert model.scales == (scale,)
    # A zero network is the identity on the mean shift: output = DIV2K mean * 255 everywhere.
    zeros = jax.tree_util.tree_map(jnp.zeros_like, variables)
    np.testing.assert_allclose(
        np.asarray(model.apply(zeros, x))[0, 0, 0], 255 * np.array(models.DIV2K_RGB_MEAN), rtol=1e-6
    )


def test_mdsr_init_creates_every_scale_and_apply_selects_one():
    model = models.MDSR(num_blocks=2, num_features=8)
    assert model.scales == models.SUPPORTED_SCALES
    variables = model.init(jax.random.key(0), jnp.zeros((1, 6, 6, 3)), scale=3)
    names = set(variables["params"])
    for s in (2, 3, 4):
        assert {f"pre_process_x{s}_0", f"pre_process_x{s}_1", f"upsample_x{s}"} <= names
    assert variables["params"]["pre_process_x2_0"]["conv1"]["kernel"].shape == (5, 5, 8, 8)
    x = jnp.full((1, 6, 6, 3), 50.0)
    for s in (2, 3, 4):
        assert model.apply(variables, x, scale=s).shape == (1, 6 * s, 6 * s, 3)
    with pytest.raises(ValueError, match="serves scales"):
        model.apply(variables, x, scale=8)


def test_bfloat16_compute_keeps_float32_params_and_output():
    model = models.edsr_baseline(2, dtype=jnp.bfloat16).clone(num_blocks=2, num_features=16)
    variables = models.init(model, jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(variables))
    x = jax.random.uniform(jax.random.key(2), (1, 8, 8, 3), maxval=255.0)
    y16 = model.apply(variables, x)
    y32 = model.clone(dtype=jnp.float32).apply(variables, x)
    assert y16.dtype == jnp.float32
    assert float(jnp.abs(y16 - y32).max()) < 3.0  # bf16 rounding on a [0, 255] output


def test_receptive_radius_counts_every_conv():
    assert models.receptive_radius(models.edsr_baseline(2)) == 36  # 1 + 32 + 1 + 1 + 1/2 -> 36
    assert models.receptive_radius(models.edsr_baseline(4)) == 36  # + 1/2 (x2 stage) + 1/4
    assert models.receptive_radius(models.edsr(3)) == 68
    assert models.receptive_radius(models.mdsr_baseline()) == 44  # + 8 for the 5x5 blocks


def test_receptive_radius_is_what_the_network_sees():
    model = models.EDSR(scale=2, num_blocks=1, num_features=4)
    variables = numpy_init(model)
    radius = models.receptive_radius(model)
    reach = measured_reach(model, variables)  # in LR pixels
    assert radius - 1 <= reach <= radius


@pytest.mark.parametrize(
    "model", [models.EDSR(scale=4, num_blocks=2, num_features=8), models.MDSR(num_blocks=1, num_features=8)]
)
def test_the_tail_of_the_trunk_is_the_whole_network(model):
    # (what tiled inference computes in two parts: edsr_jax.inference.Upscaler.split_tile)
    variables = numpy_init(model)
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 255, (1, 11, 9, 3)), jnp.float32)
    for scale in model.scales:
        features = model.apply(variables, x, scale=scale, part="trunk")
        assert features.shape == (1, 11, 9, 8)
        np.testing.assert_array_equal(
            model.apply(variables, features, scale=scale, part="tail"), model.apply(variables, x, scale=scale)
        )
    with pytest.raises(ValueError, match="part must be one of"):
        model.apply(variables, x, scale=model.scales[0], part="body")
    assert edsr_module.tail_radius(model) == 2  # 1 + 1/2 + 1/4 at x4, rounded up


def test_tail_radius_is_what_the_tail_sees():
    model = models.EDSR(scale=2, num_blocks=1, num_features=4)
    variables = numpy_init(model)
    tail = jax.jit(lambda v, f: model.apply(v, f, part="tail"))
    features = np.zeros((1, 15, 15, 4), np.float32)
    base = np.asarray(tail(variables, features))
    features[0, 7, 7] += 10.0
    rows = np.nonzero((np.abs(np.asarray(tail(variables, features)) - base) > 1e-5).any(axis=(0, 2, 3)))[0]
    reach = max(7 * 2 - rows.min(), rows.max() - (7 * 2 + 1)) / 2  # in LR pixels
    assert edsr_module.tail_radius(model) - 1 <= reach <= edsr_module.tail_radius(model)
