"""The optimizer: learning-rate schedules, parameter groups and Adam per group.

MDSR keeps Adam state per scale; a step keeps the other scales' groups bit-identical
(:func:`keep_inactive`), since Adam would move a zero-gradient parameter through its momentum.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from edsr_jax import models
from edsr_jax.errors import UserError

# Optimizer group of parameters every scale uses.
SHARED_GROUP = "shared"
# The learning-rate schedules ``config.learning_rate_schedule`` may name.
SCHEDULES = ("step", "cosine")
# Top-level parameter names that belong to one MDSR scale (pre_process_x3_0, upsample_x3, ...).
_SCALE_PARAM = re.compile(r"_x(\d+)(?:_|$)")


def create_learning_rate_fn(config) -> optax.Schedule:
    """The learning rate per step: ``"step"`` (the paper's) or ``"cosine"``, after a linear warm-up.

    Raises:
      UserError: unknown schedule name.
    """
    peak, total = float(config.learning_rate), int(config.num_train_steps)
    warmup = int(round(float(config.warmup_fraction) * total))
    if config.learning_rate_schedule == "step":
        main = optax.exponential_decay(
            peak,
            int(config.learning_rate_decay_steps),
            float(config.learning_rate_decay_factor),
            staircase=True,
        )
    elif config.learning_rate_schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, max(1, total - warmup))
    else:
        raise UserError(
            f"config.learning_rate_schedule must be {' or '.join(map(repr, SCHEDULES))}, "
            f"got {config.learning_rate_schedule!r}"
        )
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def param_group(name: str) -> str:
    """The optimizer group of a top-level parameter name: ``"x{s}"`` for per-scale modules."""
    match = _SCALE_PARAM.search(name)
    return f"x{match.group(1)}" if match else SHARED_GROUP


def param_labels(params: Mapping) -> dict:
    """A tree like ``params`` whose leaves are each parameter's group."""
    return {name: _fill(sub, param_group(name)) for name, sub in params.items()}


def _fill(tree: Any, value: str) -> Any:
    return jax.tree.map(lambda _: value, tree)


def optimizer_groups(model: models.SRModel) -> tuple[str, ...]:
    """``("shared",)`` for EDSR; plus ``"x2"``, ``"x3"``... for MDSR."""
    if isinstance(model, models.MDSR):
        return (SHARED_GROUP, *(f"x{s}" for s in model.scales))
    return (SHARED_GROUP,)


def create_optimizer(config, model: models.SRModel) -> optax.GradientTransformation:
    """Adam's scaling (no learning rate: the train step applies it), one state per group."""
    b1, b2, eps = float(config.adam_b1), float(config.adam_b2), float(config.adam_eps)
    return optax.multi_transform(
        {g: optax.scale_by_adam(b1, b2, eps) for g in optimizer_groups(model)}, param_labels
    )


def keep_inactive(
    params: Any, opt_state: Any, old_params: Any, old_opt_state: Any, scale: int
) -> tuple[Any, Any]:
    """New parameters and Adam state for the shared group and ``scale``'s; the old ones elsewhere."""
    active = (SHARED_GROUP, f"x{scale}")
    labels = param_labels(old_params)
    params = jax.tree.map(lambda g, new, old: new if g in active else old, labels, params, old_params)
    inner = {
        g: (new if g in active else old_opt_state.inner_states[g])
        for g, new in opt_state.inner_states.items()
    }
    return params, opt_state._replace(inner_states=inner)


# The EMA and guards act around the optimizer: checkpoints with and without them restore into each other.
# Decay of the running mean loss that spike skipping compares each step's loss with.
LOSS_MEAN_DECAY = 0.99
# Accepted steps before spike skipping starts judging (the running mean needs a history first).
SKIP_WARMUP_STEPS = 10


def ema_update(ema: Any, params: Any, decay: float) -> Any:
    """The exponential moving average of the weights: ``decay * ema + (1 - decay) * params``."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def clip_by_global_norm(grads: Any, max_norm: float) -> tuple[Any, jax.Array]:
    """``(grads, norm)``: ``grads`` clipped to global norm ``max_norm`` (0: off), and the norm before."""
    norm = optax.tree.norm(grads)
    if max_norm <= 0:
        return grads, norm
    factor = jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))
    return jax.tree.map(lambda g: g * factor.astype(g.dtype), grads), norm


def init_loss_stats() -> dict[str, jax.Array]:
    """The spike guard's state: an exponential moving sum of accepted losses and their count."""
    return {"loss_ema": jnp.zeros((), jnp.float32), "count": jnp.zeros((), jnp.int32)}


def running_mean_loss(stats: Mapping[str, jax.Array]) -> jax.Array:
    """The bias-corrected running mean of the accepted losses (0 before the first one)."""
    correction = 1.0 - LOSS_MEAN_DECAY ** stats["count"].astype(jnp.float32)
    return jnp.where(stats["count"] > 0, stats["loss_ema"] / jnp.maximum(correction, 1e-30), 0.0)


def is_spike(loss: jax.Array, stats: Mapping[str, jax.Array], factor: float) -> jax.Array:
    """Whether a finite ``loss`` exceeds ``factor`` x the running mean, after the warm-up steps."""
    if factor <= 0:
        return jnp.zeros((), bool)
    judged = stats["count"] >= SKIP_WARMUP_STEPS
    return judged & jnp.isfinite(loss) & (loss > factor * running_mean_loss(stats))


def update_loss_stats(stats: Mapping[str, jax.Array], loss: jax.Array, accepted: jax.Array) -> dict:
    """Adds an accepted step's loss to the running mean; a skipped step leaves it as it was."""
    new = {
        "loss_ema": LOSS_MEAN_DECAY * stats["loss_ema"] + (1.0 - LOSS_MEAN_DECAY) * loss.astype(jnp.float32),
        "count": stats["count"] + 1,
    }
    return jax.tree.map(lambda n, o: jnp.where(accepted, n, o), new, dict(stats))
