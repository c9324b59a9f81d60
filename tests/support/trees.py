"""Parameter trees for tests: random values of the right shapes (no compiled initialiser) and
exact comparisons."""

import jax
import jax.numpy as jnp
import numpy as np

from edsr_jax import models


def random_params(model, seed):
    """Parameters of the right shapes without compiling the initialiser (seconds on a busy CPU)."""
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0))["params"])
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.uniform(-0.2, 0.2, a.shape).astype(np.float32), shapes)


def numpy_init(model, seed=0):
    """PyTorch-like random variables made with numpy (compiling jax.random's init is slow on CPU)."""
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))
    rng = np.random.default_rng(seed)

    def fill(leaf):
        bound = 1 / np.sqrt(np.prod(leaf.shape[:-1])) if len(leaf.shape) == 4 else 0.1
        return jnp.asarray(rng.uniform(-bound, bound, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map(fill, shapes)


def params_of(state):
    """A training state's parameters as host numpy arrays."""
    return jax.tree.map(np.asarray, jax.device_get(state.params))


def assert_trees_equal(a, b):
    """Bit-for-bit equality of two trees of arrays (same structure)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
