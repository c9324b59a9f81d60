"""The step programs (edsr_jax.train_step) and the run settings around them: K steps per call give
the bits of one step per call (EDSR and MDSR, resumed mid-way too), cadences that calls cannot
reach are refused, and the precision policy reaches the compiled step and the run's records."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support.configs import tiny_config
from support.trees import assert_trees_equal, params_of

from edsr_jax import config_checks, models, optim, precision, sharding, train, train_step
from edsr_jax.errors import UserError

pytestmark = pytest.mark.usefixtures("compilation_cache")


def _run(cache_dir, workdir, **overrides):
    return train.train_and_evaluate(tiny_config(cache_dir, **overrides), str(workdir))


def test_k_steps_per_call_give_the_same_bits_for_any_k_and_agree_with_one_step_per_call(tmp_path, cache_dir):
    # 6 steps: with K=4 the second call runs 2 steps (a partial call of the same program). One step
    # per call is straight-line code, which XLA:CPU compiles differently from a loop body: it agrees
    # to float rounding (RESULTS.md "Steps per call on CPU"); loops of any K agree to the bit.
    cadence = {"log_every_steps": 4, "checkpoint_every_steps": 0, "eval_every_steps": 0}
    one = _run(cache_dir, tmp_path / "one", **cadence)
    two = _run(cache_dir, tmp_path / "two", steps_per_call=2, **cadence)
    four = _run(cache_dir, tmp_path / "four", steps_per_call=4, **cadence)
    assert int(one.step) == int(two.step) == int(four.step) == 6
    assert_trees_equal(params_of(four), params_of(two))
    assert_trees_equal(jax.device_get(four.opt_state), jax.device_get(two.opt_state))
    for a, b in zip(jax.tree.leaves(params_of(four)), jax.tree.leaves(params_of(one)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_a_run_resumed_off_a_call_boundary_keeps_the_bits(tmp_path, cache_dir):
    cadence = {"log_every_steps": 2, "checkpoint_every_steps": 2, "eval_every_steps": 0, "steps_per_call": 2}
    reference = _run(cache_dir, tmp_path / "ref", **cadence)
    workdir = tmp_path / "resumed"
    train.train_and_evaluate(tiny_config(cache_dir, **cadence), str(workdir), on_step=lambda s: s == 2)
    # Resumed at step 2 with 4 steps per call: one call of 2 steps (to 4), then 2.
    resumed = _run(cache_dir, workdir, steps_per_call=4, log_every_steps=4, checkpoint_every_steps=4)
    assert int(resumed.step) == 6
    assert_trees_equal(params_of(resumed), params_of(reference))


def test_mdsr_switches_scale_per_step_inside_a_call_with_the_same_bits(tmp_path, cache_dir):
    mdsr = {"model__arch": "mdsr", "scales": "2,3,4", "eval_every_steps": 0, "checkpoint_every_steps": 0}
    two = _run(cache_dir, tmp_path / "two", steps_per_call=2, log_every_steps=6, **mdsr)
    three = _run(cache_dir, tmp_path / "three", steps_per_call=3, log_every_steps=6, **mdsr)
    assert_trees_equal(params_of(three), params_of(two))
    assert_trees_equal(jax.device_get(three.opt_state), jax.device_get(two.opt_state))


def test_call_sizes_end_on_multiples_of_k_and_at_the_last_step():
    assert list(train.call_sizes(0, 10, 4)) == [4, 4, 2]
    assert list(train.call_sizes(6, 17, 4)) == [2, 4, 4, 1]
    assert list(train.call_sizes(5, 5, 4)) == []
    assert list(train.call_sizes(0, 3, 1)) == [1, 1, 1]


def test_cadences_that_calls_cannot_reach_are_refused():
    config = tiny_config(
        "", steps_per_call=4, log_every_steps=6, eval_every_steps=0, checkpoint_every_steps=8
    )
    with pytest.raises(UserError) as e:
        config_checks.check_config(config)
    assert "log_every_steps=6 (must be a multiple of steps_per_call=4)" in str(e.value)
    assert "checkpoint_every_steps" not in str(e.value)
    with pytest.raises(UserError, match=r"steps_per_call=0 \(must be >= 1\)"):
        config_checks.check_config(tiny_config("", steps_per_call=0))


def _lowered_step(model, matmul_precision):
    tx = optim.create_optimizer(tiny_config(""), model)
    mesh = sharding.create_mesh(jax.devices()[:1])
    state, shardings = train_step.create_train_state(model.clone(dtype=None), tx, mesh, jax.random.PRNGKey(0))
    fn = train_step.compile_train_steps(
        model, tx, optax.constant_schedule(1e-3), mesh, shardings, (2,), matmul_precision=matmul_precision
    )
    batches = {
        "low_res": jnp.zeros((2, 8, 6, 6, 3), jnp.uint8),
        "high_res": jnp.zeros((2, 8, 12, 12, 3), jnp.uint8),
        "scale_index": jnp.zeros((2,), jnp.int32),
    }
    return fn.lower(state, batches, np.int32(2)).as_text()


@pytest.mark.parametrize(
    ("name", "conv_precision", "conv_type"),
    [("fp32", "HIGHEST", "f32"), ("tf32", "HIGH", "f32"), ("bf16", "DEFAULT", "bf16")],
)
def test_each_precision_policy_reaches_the_convolutions_of_the_step(name, conv_precision, conv_type):
    policy = precision.resolve(name, "gpu")
    model = models.EDSR(scale=2, num_blocks=1, num_features=8, dtype=policy.compute_dtype)
    text = _lowered_step(model, policy.matmul_precision)
    convs = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    assert convs and all(f"precision {conv_precision}" in line for line in convs), convs[0]
    assert all(f"x{conv_type}>" in line.split(":")[-1] for line in convs), convs[0]


def test_auto_is_bf16_on_accelerators_and_fp32_on_cpus():
    assert precision.resolve("auto", "gpu").name == precision.resolve("auto", "tpu").name == "bf16"
    assert precision.resolve("auto", "cpu").name == "fp32"
    with pytest.raises(
        ValueError, match="config.precision must be one of auto, fp32, tf32, bf16, got 'fp16'"
    ):
        precision.resolve("fp16", "cpu")


def test_the_run_prints_and_records_the_precision_it_trained_with(tmp_path, cache_dir, capsys):
    _run(cache_dir, tmp_path / "w", num_train_steps=2, precision="bf16", eval_every_steps=0)
    assert "precision bf16 (bfloat16 activations and convolutions" in capsys.readouterr().out
    with open(tmp_path / "w" / "model.json", encoding="utf-8") as f:
        recorded = json.load(f)["metadata"]["config"]
    assert recorded["precision"] == "bf16" and "dtype" not in recorded
    _run(cache_dir, tmp_path / "auto", num_train_steps=2, eval_every_steps=0)  # auto, on this CPU
    with open(tmp_path / "auto" / "model.json", encoding="utf-8") as f:
        assert json.load(f)["metadata"]["config"]["precision"] == "fp32"


def test_the_old_dtype_field_still_works_and_old_runs_resume_without_a_warning(tmp_path, cache_dir, capsys):
    config = tiny_config(cache_dir, num_train_steps=2, eval_every_steps=0)
    overridden = tiny_config(cache_dir, dtype="bfloat16")  # (an override with the old name)
    assert overridden.precision == "bf16"
    assert (
        "warning: config.dtype is now config.precision (use config.precision='bf16')"
        in capsys.readouterr().err
    )
    with pytest.deprecated_call(match="config.dtype is now config.precision"):
        upgraded = config_checks.upgrade(_with_dtype(config, "bfloat16"))
    assert upgraded.precision == "bf16" and "dtype" not in upgraded
    # A run written before the rename (model.json holds dtype=float32, no precision) resumes quietly.
    workdir = tmp_path / "old"
    train.train_and_evaluate(config, str(workdir))
    path = os.path.join(workdir, "model.json")
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    stored = record["metadata"]["config"]
    stored["dtype"] = "float32"
    del stored["precision"]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    capsys.readouterr()
    _run(cache_dir, workdir, num_train_steps=4, eval_every_steps=0)
    out = capsys.readouterr().out
    (warning,) = [line for line in out.splitlines() if "config differs" in line]
    assert "num_train_steps 2 -> 4" in warning and "precision" not in warning and "dtype" not in warning


def _with_dtype(config, value):
    config = config.copy_and_resolve_references()
    config.dtype = value
    return config
