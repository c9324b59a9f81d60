"""Small training states saved with the checkpoint manager (tests/checkpoint)."""

import jax
import jax.numpy as jnp
import numpy as np

from edsr_jax.checkpoint import manager as checkpoint_manager
from edsr_jax.train_step import TrainState


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
    manager = checkpoint_manager.create_manager(directory, keep=keep)
    for step in steps:
        metrics = {checkpoint_manager.BEST_METRIC: scores[step]} if scores and step in scores else None
        checkpoint_manager.save(manager, make_state(step), metrics=metrics)
    manager.wait_until_finished()
    return manager
