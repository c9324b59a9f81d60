"""Checks a training config's values before anything is created, so a bad value fails first, not
late or never; and flattens configs for ``model.json``, hparams and the resume warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from edsr_jax import storage
from edsr_jax.errors import UserError

# Most changed config fields one resume warning lists.
MAX_CHANGES_LISTED = 12

# (dotted field, test, what the test requires): the numeric rules of a training config.
_RULES = (
    ("num_train_steps", lambda v: v >= 0, ">= 0"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("patch_size", lambda v: v >= 1, ">= 1 (LR pixels)"),
    ("model.num_blocks", lambda v: v >= 0, ">= 0"),
    ("model.num_features", lambda v: v >= 1, ">= 1"),
    ("model.res_scale", lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    ("learning_rate", lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    ("learning_rate_decay_steps", lambda v: v >= 1, ">= 1"),
    ("learning_rate_decay_factor", lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
    ("warmup_fraction", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("log_every_steps", lambda v: v >= 1, ">= 1"),
    ("checkpoint_every_steps", lambda v: v >= 0, ">= 0 (0: only at evaluations and the end)"),
    ("eval_every_steps", lambda v: v >= 0, ">= 0 (0: only at the end)"),
    ("keep_checkpoints", lambda v: v >= 1, ">= 1"),
    ("data.threads", lambda v: v >= 0, ">= 0 (0: one per core)"),
    ("data.workers", lambda v: v >= 0, ">= 0 (0: threads only)"),
    ("data.prefetch", lambda v: v >= 1, ">= 1"),
    ("eval.num_images", lambda v: v >= 0, ">= 0 (0: all)"),
    ("ema_decay", lambda v: 0 <= v < 1, "in [0, 1) (0: no EMA)"),
    ("grad_clip_norm", lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0 (0: no clipping)"),
    ("skip_loss_factor", lambda v: v == 0 or (math.isfinite(v) and v > 1), "0 (off) or a finite number > 1"),
    ("steps_per_call", lambda v: v >= 1, ">= 1"),
)
# Cadences that must fall where calls of config.steps_per_call steps end.
_CADENCES = ("log_every_steps", "checkpoint_every_steps", "eval_every_steps")


# Renamed fields: old dotted name -> (new name, old value -> new value), still accepted with a
# warning; ``float32`` (JAX's default precision) computed what ``fp32`` does on those runs' CPUs;
# ``lr_*`` became ``learning_rate_*`` so that ``lr`` means one thing.
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "dtype": ("precision", lambda v: {"float32": "fp32", "bfloat16": "bf16"}.get(v, v)),
    "lr_schedule": ("learning_rate_schedule", lambda v: v),
    "lr_decay_steps": ("learning_rate_decay_steps", lambda v: v),
    "lr_decay_factor": ("learning_rate_decay_factor", lambda v: v),
}


def renamed_message(old: str, value: Any) -> str:
    """How to write an old field today: ``config.dtype is now config.precision (use ... = 'bf16')``."""
    new, convert = RENAMED[old]
    return f"config.{old} is now config.{new} (use config.{new}={convert(value)!r})"


def upgrade(config: Any) -> Any:
    """``config`` with old field names (:data:`RENAMED`) moved to the new ones, with a DeprecationWarning."""
    found = [old for old in RENAMED if _has(config, old)]
    if not found:
        return config
    config = (
        config.copy_and_resolve_references() if hasattr(config, "copy_and_resolve_references") else config
    )
    for old in found:
        *parents, leaf = old.split(".")
        node = config
        for part in parents:
            node = node[part]
        value = node[leaf]
        del node[leaf]
        new, convert = RENAMED[old]
        *new_parents, new_leaf = new.split(".")
        target = config
        for part in new_parents:
            target = target[part]
        target[new_leaf] = convert(value)
        warnings.warn(renamed_message(old, value), DeprecationWarning, stacklevel=3)
    return config


def upgrade_flat(flat: Mapping[str, Any]) -> dict[str, Any]:
    """A flattened config (``model.json``) with old field names replaced by the new ones."""
    out = dict(flat)
    for old, (new, convert) in RENAMED.items():
        if old in out:
            out[new] = convert(out.pop(old))
    return out


def _has(config: Any, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node.keys():
            return False
        node = node[part]
    return True


def _get(config: Any, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _choices() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(dotted field, allowed values), each list read from the module that uses the field."""
    from edsr_jax import models, optim, precision, train_step
    from edsr_jax.data import pipeline, sources
    from edsr_jax.imaging import metrics

    return (
        ("model.arch", models.ARCHS),
        ("loss", tuple(train_step.LOSS_FUNCTIONS)),
        ("precision", precision.NAMES),
        ("learning_rate_schedule", optim.SCHEDULES),
        ("data.source", sources.SOURCES),
        ("data.skip_small", pipeline.SKIP_SMALL),
        ("eval.protocol", tuple(metrics.PROTOCOLS)),
    )


def problems(config: Any) -> list[str]:
    """Every value of ``config`` that breaks a rule, as ``"field=value (must be ...)"``."""
    found = []
    for field, ok, rule in _RULES:
        value = _get(config, field)
        try:
            good = not isinstance(value, bool) and ok(value)
        except TypeError:
            good = False
        if not good:
            found.append(f"{field}={value!r} (must be {rule})")
    for field, allowed in _choices():
        value = _get(config, field)
        if value not in allowed:
            found.append(f"{field}={value!r} (must be one of {', '.join(allowed)})")
    per_call = _get(config, "steps_per_call")
    if isinstance(per_call, int) and per_call > 1:
        for field in _CADENCES:
            value = _get(config, field)
            if isinstance(value, int) and value % per_call:
                found.append(f"{field}={value} (must be a multiple of steps_per_call={per_call})")
    # Only TFDS reads its data_dir from a bucket; image folders and the .npy cache are local files.
    for field, local_only in (("data.data_dir", config.data.source != "tfds"), ("data.cache_dir", True)):
        value = _get(config, field)
        try:
            if value:
                storage.location(value, field, local_only=local_only)
        except UserError as e:
            found.append(str(e))
    return found


def check_config(config: Any) -> None:
    """Raises UserError naming every invalid field of a training config, its value and its rule."""
    found = problems(config)
    if found:
        raise UserError(f"invalid config: {'; '.join(found)}")


def flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for a nested config; tuples and None as strings (for hparams and model.json)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, bool | int | float | str) else str(value)
    return out


# Fields that do not change what a run computes (where and how fast only).
NO_EFFECT_FIELDS = frozenset(
    {
        "compilation_cache_dir",
        "data.threads",
        "data.workers",
        "data.prefetch",
        "async_checkpoints",
        "distributed",
        "steps_per_call",
    }
)
# Fields added after runs were started, with the value that computes what those runs computed.
ADDED_FIELDS = {
    "loss": "l1",
    "ema_decay": 0.0,
    "grad_clip_norm": 0.0,
    "skip_loss_factor": 0.0,
    "steps_per_call": 1,
}


def changes_that_matter(changed: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    """The ``(field, old, new)`` differences that change what a resumed run computes."""

    def matters(key, old, new) -> bool:
        if key in NO_EFFECT_FIELDS:
            return False
        return not (old is None and key in ADDED_FIELDS and new == ADDED_FIELDS[key])

    return [change for change in changed if matters(*change)]


def change_message(changed: list[tuple[str, Any, Any]], limit: int = MAX_CHANGES_LISTED) -> str:
    """One warning line naming the config entries that differ from the run's ``model.json``."""
    items = [f"{key} {old!r} -> {new!r}" for key, old, new in changed]
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return (
        "warning: this config differs from the one this workdir's run started with (model.json): "
        + "; ".join(items[:limit])
        + more
        + ". Training resumes with the new values; from here the run is not the one an "
        "uninterrupted run of either config would give."
    )
