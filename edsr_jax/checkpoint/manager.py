"""Training checkpoints: the Orbax ``CheckpointManager`` of ``WORKDIR/checkpoints``.

A step folder holds ``params`` (restorable alone), ``train``, ``meta`` and the optional items.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers

from edsr_jax.checkpoint import late_results, recovery
from edsr_jax.errors import UserError

# The metric that ranks checkpoints for "best" (higher is better).
BEST_METRIC = "val_psnr"
# The best checkpoint, or the latest when none was scored (like the official model_best.pt).
BEST_OR_LATEST = "best_or_latest"
# Item names inside a step folder.
PARAMS_ITEM, TRAIN_ITEM, META_ITEM = "params", "train", "meta"
# Optional items: TrainState fields saved when not None.
EMA_ITEM, STATS_ITEM, LOSS_STATS_ITEM = "ema_params", "batch_stats", "loss_stats"
OPTIONAL_ITEMS = (EMA_ITEM, STATS_ITEM, LOSS_STATS_ITEM)
ITEMS = (PARAMS_ITEM, TRAIN_ITEM, META_ITEM, *OPTIONAL_ITEMS)
# Which weights a reader takes ("auto": the EMA when the run kept one).
WEIGHTS = ("auto", "ema", "raw")


# How often a reader lists or resolves again when a running trainer deleted a step meanwhile.
READ_ATTEMPTS = 5
READ_RETRY_PAUSE_S = 0.2


def create_manager(
    directory: str | os.PathLike,
    *,
    keep: int = 3,
    keep_best: bool = True,
    async_save: bool = True,
    read_only: bool = False,
) -> ocp.CheckpointManager:
    """A ``CheckpointManager`` keeping the last ``keep`` steps and the best by ``val_psnr``.

    ``read_only`` creates and removes nothing, and lists again when a running trainer deletes a step
    while it is listed. Close it before the process exits.
    """
    if keep < 1:
        raise UserError(f"config.keep_checkpoints must be at least 1, got {keep}")
    policies = [checkpoint_managers.LatestN(n=keep)]
    if keep_best:
        policies.append(
            checkpoint_managers.BestN(get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False)
        )
    options = ocp.CheckpointManagerOptions(
        create=not read_only,  # Orbax's read_only mode warns on every open
        enable_async_checkpointing=async_save,
        preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
        best_fn=_best_metric,  # stores the metrics
        best_mode="max",
        cleanup_tmp_directories=not read_only,
    )
    for attempt in range(READ_ATTEMPTS):
        try:
            return ocp.CheckpointManager(os.fspath(directory), item_names=ITEMS, options=options)
        except FileNotFoundError:
            # A running trainer deleted a step between Orbax's listing of the folder and its reading
            # of that step's metadata: list again.
            if not read_only or attempt == READ_ATTEMPTS - 1:
                raise
            time.sleep(READ_RETRY_PAUSE_S)
    raise AssertionError("unreachable")


def _best_metric(metrics: Any) -> float:
    value = (metrics or {}).get(BEST_METRIC)
    return float("-inf") if value is None else float(value)


def save(
    manager: ocp.CheckpointManager,
    state: Any,
    *,
    meta: dict | None = None,
    metrics: dict | None = None,
) -> bool:
    """Starts an asynchronous save of ``state`` at its step; False when the step is already saved."""
    step = int(jax.device_get(state.step))
    if step in manager.all_steps():
        return False
    info = {"step": step, "data_position": step, **(meta or {})}
    optional = {i: getattr(state, i) for i in OPTIONAL_ITEMS if getattr(state, i, None) is not None}
    args = ocp.args.Composite(
        **{
            PARAMS_ITEM: ocp.args.StandardSave(state.params),
            TRAIN_ITEM: ocp.args.StandardSave(_train_part(state)),
            META_ITEM: ocp.args.JsonSave(info),
            **{i: ocp.args.StandardSave(tree) for i, tree in optional.items()},
        }
    )
    clean = {k: float(v) for k, v in (metrics or {}).items()}
    return manager.save(step, args=args, metrics=clean, force=True)


def _train_part(state: Any) -> dict:
    return {"opt_state": state.opt_state, "step": state.step, "rng": state.rng}


def is_complete(manager: ocp.CheckpointManager, step: int) -> bool:
    """Whether a step folder has a commit timestamp and every item (not a partial copy)."""
    folder = epath.Path(manager.directory) / str(step)
    try:
        committed = json.loads((folder / "_CHECKPOINT_METADATA").read_text()).get("commit_timestamp_nsecs")
    except (OSError, ValueError, AttributeError):
        return False
    return committed is not None and all((folder / i).is_dir() for i in (PARAMS_ITEM, TRAIN_ITEM, META_ITEM))


def complete_steps(manager: ocp.CheckpointManager) -> list[int]:
    """The steps of complete checkpoints, ascending."""
    return [s for s in sorted(manager.all_steps()) if is_complete(manager, s)]


def set_aside_incomplete(manager: ocp.CheckpointManager) -> list[tuple[int, str]]:
    """Renames incomplete step folders to ``incomplete-<step>``; returns ``[(step, new path)]``."""
    moved = []
    for step in sorted(manager.all_steps()):
        if not is_complete(manager, step):
            moved.append((step, os.fspath(recovery.set_aside(manager.directory, step, "incomplete"))))
    if moved:
        manager.reload()
    return moved


def restore(manager: ocp.CheckpointManager, abstract_state: Any, step: int | None = None) -> Any:
    """The ``TrainState`` of ``step`` (default: the latest) sharded like ``abstract_state``, or None.

    A damaged latest checkpoint is set aside with a warning and the one before restored.

    Raises:
      UserError: every complete checkpoint is damaged.
      OSError, RuntimeError: reading failed otherwise (the folder is left in place).
    """
    if step is not None:
        return _restore_step(manager, abstract_state, step)
    steps = complete_steps(manager)
    for candidate in reversed(steps):
        state, error = None, None
        try:
            state = _restore_step(manager, abstract_state, candidate)
        except Exception as e:
            error = e
        outcome = recovery.agree(recovery.outcome_of(error))
        if outcome == recovery.READ:
            return state
        if outcome == recovery.FAILED:
            failure = recovery.left_in_place(manager.directory, candidate, error)
            raise failure from (None if failure is error else error)
        recovery.set_aside_damaged(manager.directory, candidate, error)
        manager.reload()
    if steps:
        raise UserError(f"no checkpoint in {manager.directory} can be read (steps {steps}); see the warnings")
    return None


def has_item(manager: ocp.CheckpointManager, step: int, item: str) -> bool:
    """Whether the checkpoint of ``step`` holds ``item`` (e.g. :data:`EMA_ITEM`)."""
    return (epath.Path(manager.directory) / str(step) / item).is_dir()


def _restore_step(manager: ocp.CheckpointManager, abstract_state: Any, step: int) -> Any:
    """The state of ``step``; optional fields the checkpoint lacks are None."""
    optional = {
        i: getattr(abstract_state, i)
        for i in OPTIONAL_ITEMS
        if getattr(abstract_state, i, None) is not None and has_item(manager, step, i)
    }
    args = ocp.args.Composite(
        **{
            PARAMS_ITEM: ocp.args.StandardRestore(abstract_state.params),
            TRAIN_ITEM: ocp.args.StandardRestore(_train_part(abstract_state)),
            **{i: ocp.args.StandardRestore(tree) for i, tree in optional.items()},
        }
    )
    restored = manager.restore(step, args=args)
    train = restored[TRAIN_ITEM]
    fields = {i: restored[i] if i in optional else None for i in OPTIONAL_ITEMS if hasattr(abstract_state, i)}
    return abstract_state.replace(
        params=restored[PARAMS_ITEM],
        opt_state=train["opt_state"],
        step=train["step"],
        rng=train["rng"],
        **fields,
    )


def best_step(manager: ocp.CheckpointManager) -> int | None:
    """The kept step with the highest ``val_psnr`` (None if no checkpoint has that metric)."""
    scored = [
        (value, step) for step in complete_steps(manager) if (value := score(manager, step)) is not None
    ]
    return max(scored)[1] if scored else None


def resolve_step(manager: ocp.CheckpointManager, which: str | int = "latest") -> int:
    """``"latest"``, ``"best"``, ``"best_or_latest"`` or a step number, as a kept step.

    Raises:
      UserError: no checkpoint, no scored one for "best", or the step is not kept.
    """
    steps = complete_steps(manager)
    where = os.fspath(manager.directory)
    if not steps:
        raise UserError(f"no complete checkpoint in {where}")
    if which == "latest":
        return steps[-1]
    if which == BEST_OR_LATEST:
        step = best_step(manager)
        return steps[-1] if step is None else step
    if which == "best":
        step = best_step(manager)
        if step is None:
            raise UserError(f"no checkpoint in {where} has a validation score ({BEST_METRIC}) for 'best'")
        return step
    try:
        step = int(which)
    except (TypeError, ValueError):
        raise UserError(
            f"which must be 'latest', 'best', '{BEST_OR_LATEST}' or a step number, got {which!r}"
        ) from None
    if step not in steps:
        raise UserError(f"no checkpoint for step {step} in {where}; kept steps: {steps}")
    return step


def score(manager: ocp.CheckpointManager, step: int) -> float | None:
    """The ``val_psnr`` a checkpoint was saved with (None if it was not scored)."""
    value = (manager.metrics(step) or {}).get(BEST_METRIC)
    return float(value) if value is not None and np.isfinite(value) else None


def describe_step(step: int, which: str | int, step_score: float | None) -> str:
    """Which checkpoint ``which`` chose and why, e.g. ``"step 300, best by val_psnr 33.10 dB"``."""
    scored = "" if step_score is None else f" ({BEST_METRIC} {step_score:.2f} dB)"
    if which in ("best", BEST_OR_LATEST) and step_score is not None:
        return f"step {step}, best by {BEST_METRIC} {step_score:.2f} dB"
    if which == BEST_OR_LATEST:
        return f"step {step}, the latest: no checkpoint was scored"
    if which == "latest":
        return f"step {step}, the latest{scored}"
    return f"step {step}{scored}"


def describe_restored(directory: str | os.PathLike, step: int, which: str | int) -> str:
    """:func:`describe_step` for a step of the checkpoint folder ``directory`` (read-only)."""
    manager = create_manager(directory, read_only=True, async_save=False)
    try:
        return describe_step(step, which, score(manager, step))
    finally:
        manager.close()


def restore_params(directory: str | os.PathLike, abstract_params: Any, which: str | int = "latest"):
    """``(params, step)``: :func:`restore_variables` with ``weights="raw"``, parameters only."""
    variables, step, _ = restore_variables(directory, {"params": abstract_params}, which, weights="raw")
    return variables["params"], step


def _weights_item(manager: ocp.CheckpointManager, step: int, weights: str) -> str:
    """The item holding the weights a reader asked for in ``step``."""
    if weights not in WEIGHTS:
        raise UserError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    has_ema = has_item(manager, step, EMA_ITEM)
    if weights == "ema" and not has_ema:
        raise UserError(
            f"checkpoint {step} in {manager.directory} has no EMA weights (the run had config.ema_decay "
            "= 0); use weights='raw' or 'auto'"
        )
    return EMA_ITEM if weights == "ema" or (weights == "auto" and has_ema) else PARAMS_ITEM


def restore_variables(
    directory: str | os.PathLike, abstract_variables: dict, which: str | int = "latest", *, weights="auto"
) -> tuple[dict, int, str]:
    """``(variables, step, item)`` of one checkpoint, for evaluation and ``init_from``.

    A step that a running trainer deletes mid-read is not an error: ``which`` is resolved again.
    """
    failed: set[int] = set()
    for attempt in range(READ_ATTEMPTS):
        last, step = attempt == READ_ATTEMPTS - 1, None
        manager = create_manager(directory, read_only=True, async_save=False)
        try:
            step = resolve_step(manager, which)
            item = _weights_item(manager, step, weights)
            wanted = {item: abstract_variables["params"]}
            if "batch_stats" in abstract_variables:
                wanted[STATS_ITEM] = abstract_variables["batch_stats"]
            args = ocp.args.Composite(**{i: ocp.args.StandardRestore(t) for i, t in wanted.items()})
            restored = manager.restore(step, args=args)
            variables = {"params": restored[item]}
            if STATS_ITEM in wanted:
                variables["batch_stats"] = restored[STATS_ITEM]
            return variables, step, item
        except UserError:
            raise
        except Exception as e:
            # A running trainer deleted the step while it was resolved (a vanished file) or read (its
            # retention empties files first): resolve `which` again. Failing twice on one step is damage.
            if last or step in failed or (step is None and not isinstance(e, FileNotFoundError)):
                raise
            if step is not None:
                failed.add(step)
        finally:
            manager.close()
        late_results.collect_abandoned_reads()
        time.sleep(READ_RETRY_PAUSE_S)
    raise AssertionError("unreachable")


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict:
    """The JSON ``meta`` item of a checkpoint."""
    restored = manager.restore(step, args=ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()}))
    return dict(restored[META_ITEM])
