"""The optimizer (edsr_jax.optim): learning-rate schedules, parameter groups, one Adam state per
group, and keeping the inactive groups bit-identical."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from support.trees import assert_trees_equal, random_params

from edsr_jax import models, optim
from edsr_jax.errors import UserError


def _config(**fields):
    base = dict(
        learning_rate=1e-4,
        num_train_steps=100,
        warmup_fraction=0.0,
        learning_rate_schedule="step",
        learning_rate_decay_steps=20,
        learning_rate_decay_factor=0.5,
        adam_b1=0.9,
        adam_b2=0.999,
        adam_eps=1e-8,
    )
    return ml_collections.ConfigDict({**base, **fields})


def test_step_schedule_halves_every_decay_steps_and_cosine_ends_at_zero():
    step = optim.create_learning_rate_fn(_config())
    assert [float(step(s)) for s in (0, 19, 20, 45)] == pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5])
    cosine = optim.create_learning_rate_fn(_config(learning_rate_schedule="cosine", warmup_fraction=0.1))
    assert float(cosine(0)) == 0.0 and float(cosine(5)) == pytest.approx(5e-5)  # linear warm-up
    assert float(cosine(10)) == pytest.approx(1e-4) and float(cosine(100)) == pytest.approx(0.0, abs=1e-12)
    assert float(cosine(55)) == pytest.approx(5e-5, rel=1e-4)  # half-way through the cosine
    with pytest.raises(
        UserError, match=r"config\.learning_rate_schedule must be 'step' or 'cosine', got 'linear'"
    ):
        optim.create_learning_rate_fn(_config(learning_rate_schedule="linear"))


def test_parameter_groups_are_shared_and_one_per_mdsr_scale():
    assert optim.param_group("head") == optim.SHARED_GROUP == "shared"
    assert optim.param_group("block_3") == "shared" and optim.param_group("upsample") == "shared"
    assert optim.param_group("pre_process_x3_1") == "x3" and optim.param_group("upsample_x4") == "x4"
    assert optim.optimizer_groups(models.EDSR(scale=2)) == ("shared",)
    assert optim.optimizer_groups(models.MDSR(scales=(2, 4))) == ("shared", "x2", "x4")
    labels = optim.param_labels({"head": {"kernel": 0, "bias": 0}, "upsample_x2": {"conv_0": {"bias": 0}}})
    assert labels == {
        "head": {"kernel": "shared", "bias": "shared"},
        "upsample_x2": {"conv_0": {"bias": "x2"}},
    }


def test_adam_has_one_state_per_group_and_keep_inactive_restores_the_other_scales():
    model = models.MDSR(scales=(2, 4), num_blocks=1, num_features=4)
    tx = optim.create_optimizer(_config(), model)
    params = random_params(model, 0)
    state = tx.init(params)
    assert sorted(state.inner_states) == ["shared", "x2", "x4"]
    grads = jax.tree.map(jnp.ones_like, params)
    updates, new_state = tx.update(grads, state, params)
    new_params = jax.tree.map(lambda p, u: p - 1e-3 * u, params, updates)
    kept, kept_state = optim.keep_inactive(new_params, new_state, params, state, scale=2)
    assert_trees_equal(kept["upsample_x4"], params["upsample_x4"])  # x4 untouched by an x2 step
    assert_trees_equal(kept_state.inner_states["x4"], state.inner_states["x4"])
    assert not np.array_equal(
        kept["upsample_x2"]["conv_0"]["kernel"], params["upsample_x2"]["conv_0"]["kernel"]
    )
    assert not np.array_equal(kept["head"]["kernel"], params["head"]["kernel"])
    assert int(kept_state.inner_states["x2"].inner_state.count) == 1
    assert int(kept_state.inner_states["shared"].inner_state.count) == 1
