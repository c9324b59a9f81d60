"""Checks a training config's values before anything is created (no workdir, no compile), and
flattens configs for ``model.json``, TensorBoard hparams and the resume warning.

Without them a bad value fails late (after the workdir, the model and the input pipeline are set up), or
not at all (``num_train_steps=-5`` "finishes" at step 0; ``log_every_steps=0`` divides by zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from edsr_jax import storage
from edsr_jax.data.sources import SOURCES
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
    ("lr_decay_steps", lambda v: v >= 1, ">= 1"),
    ("lr_decay_factor", lambda v: math.isfinite(v) and v > 0, "a finite number > 0"),
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
)
# (dotted field, allowed values): the names a training config may use.
_CHOICES = (
    ("model.arch", ("edsr", "mdsr", "srresnet")),
    ("loss", ("l1", "l2")),
    ("dtype", ("float32", "bfloat16")),
    ("lr_schedule", ("step", "cosine")),
    ("data.source", SOURCES),
    ("data.skip_small", ("error", "skip")),
    ("eval.protocol", ("div2k", "benchmark")),
)


def _get(config: Any, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


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
    for field, allowed in _CHOICES:
        value = _get(config, field)
        if value not in allowed:
            found.append(f"{field}={value!r} (must be one of {', '.join(allowed)})")
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
    """Raises if any value of a training config is invalid.

    Args:
      config: an ``ml_collections.ConfigDict`` with the fields of ``configs/default.py``.

    Raises:
      UserError: naming every invalid field, its value and the rule it breaks.
    """
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
    }
)
# Fields added after runs were started, with the value that computes what those runs computed.
ADDED_FIELDS = {"loss": "l1", "ema_decay": 0.0, "grad_clip_norm": 0.0, "skip_loss_factor": 0.0}


def changes_that_matter(changed: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    """The config differences (``(field, old, new)``) that change what a resumed run computes:
    not :data:`NO_EFFECT_FIELDS`, nor an :data:`ADDED_FIELDS` entry absent from an older run at the
    value that keeps its behaviour."""

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
