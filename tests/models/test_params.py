"""Parameters (edsr_jax.models.params): PyTorch-like init, the spec, shapes and paths, copying
matching tensors, folding the residual scale."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support.trees import random_params

from edsr_jax import models


def test_pytorch_default_initialisation_bounds():
    model = models.EDSR(scale=2, num_blocks=1, num_features=16)
    p = models.init(model, jax.random.key(1))["params"]
    for leaf, fan_in in [(p["head"]["kernel"], 27), (p["head"]["bias"], 27), (p["tail"]["kernel"], 144)]:
        bound = 1 / np.sqrt(fan_in)
        assert float(jnp.abs(leaf).max()) <= bound
        assert float(jnp.abs(leaf).max()) > 0.8 * bound  # uniform over the whole range, not lecun_normal


def test_fast_init_has_flax_structure_and_is_deterministic():
    model = models.MDSR(num_blocks=1, num_features=8)
    x = jnp.zeros((1, 8, 8, 3))
    reference = jax.eval_shape(lambda: model.init(jax.random.key(0), x, scale=2))
    a = models.init(model, jax.random.key(5))
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(reference)
    assert jax.tree.map(lambda t: t.shape, a) == jax.tree.map(lambda t: t.shape, reference)
    b = models.init(model, jax.random.key(5))
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    c = models.init(model, jax.random.key(6))
    assert not np.array_equal(a["params"]["tail"]["kernel"], c["params"]["tail"]["kernel"])


@pytest.mark.parametrize(
    "model",
    [
        models.EDSR(scale=2, num_blocks=3, num_features=16, res_scale=0.1),
        models.MDSR(num_blocks=2, num_features=8, res_scale=0.5),
    ],
)
def test_fold_residual_scaling_keeps_outputs(model):
    variables = models.init(model, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(3), (1, 9, 7, 3), maxval=255.0)
    folded_model, folded = models.fold_residual_scaling(model, variables)
    assert folded_model.res_scale == 1.0
    for s in model.scales:
        y = model.apply(variables, x, scale=s)
        y2 = folded_model.apply(folded, x, scale=s)
        np.testing.assert_allclose(np.asarray(y2), np.asarray(y), rtol=1e-4, atol=1e-4 * 255)
    # the unfolded model with folded weights is different: the fold really changed conv2
    assert not np.allclose(np.asarray(model.apply(folded, x, scale=s)), np.asarray(y), atol=1e-3)


def test_spec_round_trip():
    for model in (models.edsr(3), models.mdsr_baseline()):
        assert models.from_spec(models.model_spec(model)) == model
    with pytest.raises(ValueError, match="unknown architecture"):
        models.from_spec({"arch": "srcnn", "num_blocks": 1, "num_features": 1})


def test_param_shapes_and_flat_params_name_every_tensor_by_its_path():
    model = models.MDSR(scales=(2, 4), num_blocks=1, num_features=8)
    shapes = models.param_shapes(model)
    abstract = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))["params"]
    flat = models.flat_params(abstract)
    assert shapes == {k: tuple(v.shape) for k, v in flat.items()}
    assert shapes["pre_process_x4_1/conv2/kernel"] == (5, 5, 8, 8)
    assert shapes["upsample_x4/conv_1/bias"] == (32,) and "upsample_x3/conv_0/bias" not in shapes
    assert models.path_key(("block_0", "conv1", "kernel")) == "block_0/conv1/kernel"
    assert models.count_params(abstract) == sum(int(np.prod(s)) for s in shapes.values())


def test_copy_matching_copies_every_tensor_whose_path_and_shape_match():
    x2_params = random_params(models.EDSR(scale=2, num_blocks=1, num_features=8), 1)
    target = random_params(models.EDSR(scale=4, num_blocks=1, num_features=8), 2)
    params, copied, not_copied = models.copy_matching(target, x2_params)
    assert sorted(not_copied) == ["upsample/conv_1/bias", "upsample/conv_1/kernel"]
    assert "upsample/conv_0/kernel" in copied and "tail/kernel" in copied and len(copied) == 12
    np.testing.assert_array_equal(
        params["block_0"]["conv1"]["kernel"], x2_params["block_0"]["conv1"]["kernel"]
    )
    np.testing.assert_array_equal(
        params["upsample"]["conv_1"]["kernel"], target["upsample"]["conv_1"]["kernel"]
    )
