"""Training checkpoints: exact restore, keep-last-K-plus-best, partial checkpoints, SIGTERM guard."""

import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edsr_jax import checkpointing
from edsr_jax.errors import UserError
from edsr_jax.train import TrainState


def make_state(step: int, seed: int = 0) -> TrainState:
    rng = np.random.default_rng(seed + step)
    return TrainState(
        step=jnp.asarray(step, jnp.int32),
        params={"head": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32)}},
        opt_state={"mu": jnp.asarray(rng.normal(size=(5,)), jnp.float32), "count": jnp.asarray(step)},
        rng=jax.random.PRNGKey(seed + step),
    )


def abstract(state: TrainState) -> TrainState:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), state)


def assert_states_equal(a: TrainState, b: TrainState) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def save_steps(directory, steps, scores=None, keep=2):
    manager = checkpointing.create_manager(directory, keep=keep)
    for step in steps:
        metrics = {checkpointing.BEST_METRIC: scores[step]} if scores and step in scores else None
        checkpointing.save(manager, make_state(step), metrics=metrics)
    manager.wait_until_finished()
    return manager


def test_restore_is_exact_and_keeps_last_k_plus_best(tmp_path):
    manager = save_steps(tmp_path, [1, 2, 3, 4, 5, 6], scores={2: 31.5, 4: 30.0}, keep=2)
    assert sorted(manager.all_steps()) == [2, 5, 6]  # last two, and the best scored one
    assert checkpointing.best_step(manager) == 2
    restored = checkpointing.restore(manager, abstract(make_state(0)))
    assert_states_equal(restored, make_state(6))
    assert_states_equal(checkpointing.restore(manager, abstract(make_state(0)), step=2), make_state(2))
    assert checkpointing.read_meta(manager, 6)["data_position"] == 6
    manager.close()


def test_restore_params_resolves_latest_best_and_step(tmp_path):
    save_steps(tmp_path, [1, 2, 3], scores={1: 40.0, 3: 20.0}, keep=1).close()
    target = abstract(make_state(0)).params
    for which, step in (("latest", 3), ("best", 1), (1, 1)):
        params, got = checkpointing.restore_params(tmp_path, target, which)
        assert got == step
        np.testing.assert_array_equal(params["head"]["kernel"], make_state(step).params["head"]["kernel"])
    with pytest.raises(UserError, match="no checkpoint for step 2 .* kept steps: \\[1, 3\\]"):
        checkpointing.restore_params(tmp_path, target, 2)


def test_partial_checkpoints_are_never_restored(tmp_path):
    manager = save_steps(tmp_path, [1, 2], keep=5)
    # A save killed mid-write leaves Orbax's temporary folder; a partial copy lacks files.
    shutil.copytree(tmp_path / "2", tmp_path / "3.orbax-checkpoint-tmp-1700000000")
    shutil.copytree(tmp_path / "2", tmp_path / "4")
    os.remove(tmp_path / "4" / "_CHECKPOINT_METADATA")
    shutil.copytree(tmp_path / "2", tmp_path / "5")
    shutil.rmtree(tmp_path / "5" / checkpointing.TRAIN_ITEM)
    manager.reload()
    assert checkpointing.complete_steps(manager) == [1, 2]
    assert_states_equal(checkpointing.restore(manager, abstract(make_state(0))), make_state(2))
    assert checkpointing.discard_incomplete(manager) == [4, 5]
    assert not (tmp_path / "4").exists() and not (tmp_path / "5").exists()
    # The steps can be saved again afterwards.
    assert checkpointing.save(manager, make_state(4))
    manager.wait_until_finished()
    assert checkpointing.complete_steps(manager) == [1, 2, 4]
    manager.close()


def test_empty_directory_restores_nothing(tmp_path):
    manager = checkpointing.create_manager(tmp_path / "none")
    assert checkpointing.restore(manager, abstract(make_state(0))) is None
    with pytest.raises(UserError, match="no complete checkpoint"):
        checkpointing.resolve_step(manager, "latest")
    manager.close()


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="at least 1, got 0"):
        checkpointing.create_manager(tmp_path, keep=0)


def test_sigterm_requests_a_stop_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with checkpointing.PreemptionGuard() as guard:
        assert not guard.should_stop(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.should_stop(2)
    assert signal.getsignal(signal.SIGTERM) is before


def test_workdir_of_another_model_is_refused(tmp_path):
    spec = {"arch": "edsr", "scale": 2, "num_blocks": 1, "num_features": 8, "res_scale": 1.0}
    assert checkpointing.prepare_workdir(str(tmp_path), spec, {"seed": 0}) == []
    checkpointing.prepare_workdir(str(tmp_path), dict(spec), {"seed": 1})  # same model: fine
    with pytest.raises(UserError, match="different model.*'scale': 4"):
        checkpointing.prepare_workdir(str(tmp_path), {**spec, "scale": 4}, {})


def test_resuming_with_another_config_reports_every_difference(tmp_path):
    from edsr_jax import train

    spec = {"arch": "edsr", "scale": 2, "num_blocks": 1, "num_features": 8, "res_scale": 1.0}
    first = {"seed": 0, "batch_size": 16, "data.scales": (2,), "lr": 1e-4, "log_every_steps": 10}
    assert checkpointing.prepare_workdir(str(tmp_path), spec, first) == []
    assert checkpointing.prepare_workdir(str(tmp_path), spec, dict(first)) == []  # tuples as stored
    second = {**first, "seed": 1, "batch_size": 32, "new_field": "x"}
    del second["log_every_steps"]
    changed = checkpointing.prepare_workdir(str(tmp_path), spec, second)
    assert changed == [
        ("batch_size", 16, 32),
        ("log_every_steps", 10, None),
        ("new_field", None, "x"),
        ("seed", 0, 1),
    ]
    # model.json keeps the config the run started with.
    assert checkpointing.prepare_workdir(str(tmp_path), spec, first) == []
    message = train.config_change_message(changed)
    assert message.startswith("warning: this config differs") and "seed 0 -> 1" in message
    assert "batch_size 16 -> 32" in message and "more" not in message
    many = train.config_change_message([(f"k{i}", i, i + 1) for i in range(15)])
    assert many.count(" -> ") == 12 and "and 3 more" in many
