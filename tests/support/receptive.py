"""How far a model's output really reaches: perturb one LR pixel and see which HR rows change."""

import jax
import numpy as np


def measured_reach(model, variables, size: int = 31, scale: int = 2) -> float:
    """The LR distance (in pixels) from a perturbed centre pixel to the farthest changed output."""
    x = np.full((1, size, size, 3), 100.0, np.float32)
    forward = jax.jit(model.apply)
    base = np.asarray(forward(variables, x))
    c = size // 2
    x[0, c, c] += 50
    changed = np.abs(np.asarray(forward(variables, x)) - base).max(axis=(0, 3)) > 1e-5
    rows = np.nonzero(changed.any(axis=1))[0]
    return max(c * scale - rows.min(), rows.max() - (c * scale + scale - 1)) / scale
