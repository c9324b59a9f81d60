"""Training EDSR and MDSR: the paper's recipe, data-parallel with ``jit``, resumable to the bit.

Batch ``k`` is a pure function of ``(seed, k)``, so a resumed run gives the uninterrupted result.
:func:`train_and_evaluate` is the only function that touches files, devices and the clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from edsr_jax import (
    compile_cache,
    config_checks,
    evaluate,
    models,
    optim,
    precision,
    sharding,
    storage,
    writers,
)
from edsr_jax import compiler_options as xla_options
from edsr_jax import train_step as steps
from edsr_jax.checkpoint import layout, lock, manager
from edsr_jax.checkpoint.preemption import PreemptionGuard
from edsr_jax.errors import UserError
from edsr_jax.imaging import metrics

# Files a training workdir holds besides checkpoints/ and model.json.
PARAMETERS_TXT = "parameters.txt"
# Calls (of config.steps_per_call steps each) kept in flight to the devices while one runs.
DEVICE_PREFETCH = 2
# The sampler of checkpoints without a "sampler" entry.
OLD_SAMPLER = "per-process single-image (edsr-jax 0.1)"


def create_model(config, platform: str | None = None) -> models.SRModel:
    """The model of ``config.model`` in ``config.precision``'s compute dtype; UserError if unsupported."""
    config = config_checks.upgrade(config)
    try:
        policy = precision.resolve(str(config.precision), platform or jax.default_backend())
    except ValueError as e:
        raise UserError(str(e)) from None
    arch, scales = config.model.arch, tuple(int(s) for s in config.scales)
    bad = [s for s in scales if s not in models.SUPPORTED_SCALES]
    if bad:
        raise UserError(f"config.scales {scales} has unsupported scales {bad}; use {models.SUPPORTED_SCALES}")
    spec = {
        "num_blocks": int(config.model.num_blocks),
        "num_features": int(config.model.num_features),
        "res_scale": float(config.model.res_scale),
    }
    if arch in ("edsr", "srresnet") and len(scales) != 1:
        raise UserError(f"an {arch.upper()} upscales by one factor, but config.scales is {scales}")
    if arch == "edsr":
        spec["scale"] = scales[0]
    elif arch == "mdsr":
        spec["scales"] = list(scales)
    elif arch == "srresnet":
        spec = {"scale": scales[0], "num_blocks": spec["num_blocks"], "num_features": spec["num_features"]}
    else:
        raise UserError(f"config.model.arch must be 'edsr', 'mdsr' or 'srresnet', got {arch!r}")
    return models.from_spec({"arch": arch, **spec}, dtype=policy.compute_dtype)


def eval_variables(state: steps.TrainState) -> dict:
    """The variables validation scores: the EMA weights if kept, with batch-norm averages if any."""
    variables = {"params": state.params if state.ema_params is None else state.ema_params}
    if state.batch_stats is not None:
        variables["batch_stats"] = state.batch_stats
    return variables


def create_validation(config, model: models.SRModel) -> evaluate.Validation:
    """Training's validation sets (val, plus ``config.eval.benchmarks``), decoded once."""
    from edsr_jax.data import benchmarks, pipeline

    samples = pipeline.create_eval_samples(config, "val", num_images=int(config.eval.num_images))
    sets = {"val": (metrics.get_protocol(config.eval.protocol), samples)}
    for name in config.eval.benchmarks if config.eval.benchmark_dir else ():
        loaded = {s: benchmarks.load_benchmark(config.eval.benchmark_dir, name, s) for s in samples}
        sets[name] = (metrics.BENCHMARK, loaded)
    return evaluate.Validation(model, sets, self_ensemble=bool(config.eval.self_ensemble))


def validate(config, validation: evaluate.Validation, variables: dict, step: int, writer, log) -> dict:
    """Scores ``variables`` and writes scalars and image strips; returns ``{"val_psnr": mean}`` or ``{}``."""
    scalars, firsts = validation(variables)
    _, val_samples = validation.sets["val"]
    strips = {
        f"val/x{scale}": writers.summary_image(
            val_samples[scale][0].lr, out, val_samples[scale][0].hr, scale, int(config.eval.image_crop)
        )[None]
        for (prefix, scale), out in firsts.items()
        if prefix == "val"
    }
    writer.write_scalars(step, scalars)
    writer.write_images(step, strips)
    log(f"step {step}  " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(scalars.items())))
    psnrs = [v for k, v in scalars.items() if k.startswith("val/psnr_")]
    return {manager.BEST_METRIC: float(np.mean(psnrs))} if psnrs else {}


def load_init_params(path: str) -> tuple[Any, str]:
    """Parameters to start from (a ``.pt``, exported model, published name or workdir's best), and a note."""
    if path.endswith((".pt", ".pth")):
        from edsr_jax.interop import torch as torch_interop

        return torch_interop.convert_state_dict(torch_interop.load_torch_state_dict(path))[1]["params"], ""
    from edsr_jax.checkpoint import exported
    from edsr_jax.interop import pretrained

    if pretrained.is_model_name(path):
        return pretrained.load_pretrained(path, progress=False)[1]["params"], "a published model"

    _, variables, note = exported.load_model_with_note(path, which=manager.BEST_OR_LATEST)
    return variables["params"], note


def restore_or_init(
    config, workdir: str, fresh: steps.TrainState, shardings: Any, ckpt, log
) -> steps.TrainState:
    """The latest complete checkpoint, else ``config.init_from``'s parameters, else ``fresh``."""
    from edsr_jax.data import pipeline

    if jax.process_index() == 0:
        for step, aside in manager.set_aside_incomplete(ckpt):
            log(f"moved the incomplete checkpoint folder of step {step} to {aside}")
    state = manager.restore(ckpt, steps.abstract_state(fresh, shardings))
    if state is not None:
        step = int(state.step)
        log(f"resumed from {layout.checkpoint_dir(workdir)} at step {step}")
        sampler = manager.read_meta(ckpt, step).get("sampler", OLD_SAMPLER)
        if sampler != pipeline.SAMPLER:
            log(
                f"warning: this run's checkpoints were written with the {sampler} batch sampler; from step "
                f"{step} it continues with the {pipeline.SAMPLER} one (every batch draws {config.batch_size} "
                "different images, the same on any number of processes), so its batches differ from "
                "what the old code would have drawn"
            )
    elif config.init_from:
        init_params, note = load_init_params(config.init_from)
        params, copied, not_copied = models.copy_matching(fresh.params, init_params)
        log(
            f"init_from {config.init_from}{f' ({note})' if note else ''}: copied {len(copied)} tensors; "
            f"not copied (kept fresh): {', '.join(not_copied) or 'none'}"
        )
        state = fresh.replace(params=jax.device_put(params, shardings.params))
    else:
        state = fresh
    step, ema = int(state.step), state.ema_params
    if fresh.ema_params is not None and (ema is None or step == 0):
        if step > 0:
            log(f"config.ema_decay is set but checkpoint {step} has no EMA: it starts from the weights")
        ema = jax.tree.map(jnp.copy, state.params)
    pick = lambda value, default: default if value is None else value  # noqa: E731
    return state.replace(
        ema_params=ema,
        batch_stats=pick(state.batch_stats, fresh.batch_stats),
        loss_stats=pick(state.loss_stats, fresh.loss_stats),
    )


def due(step: int, every: int, total: int) -> bool:
    """Whether a periodic action (``every`` steps; 0: only at the end) falls at ``step``."""
    return step == total or (every > 0 and step % every == 0)


def call_sizes(start: int, total: int, per_call: int) -> Iterator[int]:
    """Steps per call from ``start`` to ``total``, ending on multiples of ``per_call`` and at ``total``."""
    step = start
    while step < total:
        size = min(per_call - step % per_call, total - step)
        yield size
        step += size


def stack_calls(
    batches: Iterator[dict], sizes: Iterator[int], per_call: int, scales: Sequence[int]
) -> Iterator[tuple[int, dict]]:
    """``(size, stacked)`` per call: ``per_call`` batch slots, the first ``size`` trained on."""
    for size in sizes:
        group = [next(batches) for _ in range(size)]
        group += [group[-1]] * (per_call - size)
        side = (
            group[0]["low_res"].shape[1] * max(scales) if len(scales) > 1 else group[0]["high_res"].shape[1]
        )
        hr = np.zeros((per_call, *group[0]["high_res"].shape[:1], side, side, 3), np.uint8)
        for i, b in enumerate(group):
            hr[i, :, : b["high_res"].shape[1], : b["high_res"].shape[2]] = b["high_res"]
        index = np.array([list(scales).index(int(b["scale"])) for b in group], np.int32)
        yield size, {"low_res": np.stack([b["low_res"] for b in group]), "high_res": hr, "scale_index": index}


@dataclasses.dataclass
class _Run:
    """What the training loop works with, set up by :func:`_set_up`."""

    config: Any
    workdir: str
    mesh: Any
    model: models.SRModel
    state: steps.TrainState
    step_fn: Callable
    ckpt: Any
    writer: writers.ConsoleWriter
    validation: evaluate.Validation | None
    workdir_lock: lock.WorkdirLock | None
    calls: Iterator[tuple[int, dict]]
    meta: dict
    log: Callable[[str], None]


@contextlib.contextmanager
def _workdir_lock(workdir: str, is_chief: bool):
    """Process 0 holds the workdir's lock; the others check that it does."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

    if not is_chief:
        multihost_utils.sync_global_devices("edsr-jax: workdir locked")
        if not lock.read_holder(workdir):
            raise UserError(f"process 0 holds no lock on workdir {workdir}: is it training another workdir?")
        yield None
        return
    with lock.WorkdirLock(workdir) as held:
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices("edsr-jax: workdir locked")
        yield held


def _set_up(config, workdir: str, devices, stack: contextlib.ExitStack, allow_other_files: bool) -> _Run:
    """Everything the loop needs; what must be closed is registered on ``stack``."""
    from edsr_jax.data import pipeline

    sharding.maybe_initialize_distributed(bool(config.distributed))
    is_chief = jax.process_index() == 0
    log = functools.partial(print, flush=True) if is_chief else (lambda text: None)
    workdir = storage.location(workdir, "workdir")
    mesh = sharding.create_mesh(devices)
    rows = sharding.process_rows(int(config.batch_size), mesh)
    platform = xla_options.platform_of(mesh.devices)
    policy = precision.resolve(str(config.precision), platform)
    model = create_model(config, platform)
    spec = models.model_spec(model)
    layout.check_training_folder(workdir, allow_other_files=allow_other_files)
    stack.enter_context(layout.removed_if_it_fails_early(workdir, is_chief=is_chief))
    held = stack.enter_context(_workdir_lock(workdir, is_chief))
    if held is not None and held.taken_over:
        log(f"warning: {held.taken_over}")
    summary = {**config_checks.flatten(config.to_dict()), "precision": policy.name}
    changed = layout.prepare_workdir(
        workdir, spec, summary, write=is_chief, upgrade_stored=config_checks.upgrade_flat
    )
    changed = config_checks.changes_that_matter(changed)
    if changed:
        log(config_checks.change_message(changed))
    tx = optim.create_optimizer(config, model)
    fresh, shardings = steps.create_train_state(
        model, tx, mesh, jax.random.PRNGKey(int(config.seed)), ema=float(config.ema_decay) > 0
    )
    ckpt = manager.create_manager(
        layout.checkpoint_dir(workdir),
        keep=int(config.keep_checkpoints),
        async_save=bool(config.async_checkpoints),
    )
    stack.callback(ckpt.close)
    stack.callback(ckpt.wait_until_finished)
    state = restore_or_init(config, workdir, fresh, shardings, ckpt, log)
    start, total = int(state.step), int(config.num_train_steps)
    writer = writers.create_writer(workdir, is_chief)
    stack.callback(writer.close)
    if is_chief:
        (epath.Path(workdir) / PARAMETERS_TXT).write_text(writers.parameter_overview(state.params) + "\n")
        log(
            f"{spec}: {models.count_params(state.params):,} parameters ({PARAMETERS_TXT}); "
            f"{mesh.devices.size} device(s), {jax.process_count()} process(es); steps {start} -> {total}; "
            f"precision {policy.name} ({policy.description})"
        )
        if start == 0:
            writer.write_hparams(summary)
    per_call = int(config.steps_per_call)
    if per_call > 1 and platform == "cpu":
        log(
            f"warning: steps_per_call={per_call} runs its steps in a loop, which XLA:CPU runs several "
            'times slower than one step per call (RESULTS.md "Steps per call on CPU"); use 1 on CPUs'
        )
    step_fn = steps.compile_train_steps(
        model,
        tx,
        optim.create_learning_rate_fn(config),
        mesh,
        shardings,
        model.scales,
        **steps.step_options(config, policy.matmul_precision),
    )
    calls: Iterator = iter(())
    if start < total:
        local = pipeline.create_train_iterator(config, start_step=start, rows=rows)
        stacked = stack_calls(local, call_sizes(start, total, per_call), per_call, model.scales)
        calls = _to_device(stacked, mesh)
    meta = {"model_spec": spec, "process_count": jax.process_count(), "sampler": pipeline.SAMPLER}
    return _Run(config, workdir, mesh, model, state, step_fn, ckpt, writer, None, held, calls, meta, log)


def _to_device(calls: Iterator[tuple[int, dict]], mesh) -> Iterator[tuple[int, dict]]:
    """The stacked host batches as global device arrays, :data:`DEVICE_PREFETCH` calls ahead."""
    sizes: list[int] = []

    def batches():
        for size, batch in calls:
            sizes.append(size)
            yield batch

    device = sharding.prefetch_to_device(
        batches(), DEVICE_PREFETCH, mesh, stacked=True, replicated_keys=("scale_index",)
    )
    for batch in device:
        yield sizes.pop(0), batch


def train_and_evaluate(
    config,
    workdir: str,
    *,
    on_step: Callable[[int], bool | None] | None = None,
    devices: Sequence[jax.Device] | None = None,
    allow_other_files: bool = False,
) -> steps.TrainState:
    """Trains (or resumes) ``config`` in ``workdir``; returns the final state.

    Writes ``model.json``, checkpoints, TensorBoard events and ``parameters.txt``, holding the
    workdir's lock. A run that fails before its first checkpoint leaves the workdir as found.

    Args:
      config: an ``ml_collections.ConfigDict`` (fields: ``edsr_jax/configs/default.py``).
      workdir: the run's directory (local or ``gs://``).
      on_step: called with the step after every call; a true return saves and stops, as SIGTERM does.
      devices: the devices to train on (default: all); batches do not depend on them.
      allow_other_files: train in a folder that holds files of no edsr-jax run.
    """
    config = config_checks.upgrade(config)
    config_checks.check_config(config)  # before anything is created
    with contextlib.ExitStack() as stack:
        cache = str(config.compilation_cache_dir)
        if cache not in ("", compile_cache.AUTO):  # "auto" is for the CLI's own process
            stack.enter_context(compile_cache.scoped(cache))
        run = _set_up(config, workdir, devices, stack, allow_other_files)
        return _train(run, on_step)


def _train(run: _Run, on_step) -> steps.TrainState:
    """The loop: calls of up to ``steps_per_call`` steps, then what falls due at their last step."""
    state, step, total = run.state, int(run.state.step), int(run.config.num_train_steps)
    timer = writers.StepTimer(step, total)
    history, reported = [], step
    with PreemptionGuard(run.ckpt) as guard:
        while step < total:
            waiting = time.perf_counter()
            size, batch = next(run.calls)
            timer.waited(time.perf_counter() - waiting)
            state, call_metrics = run.step_fn(state, batch, np.int32(size))
            history.append((step, size, call_metrics))
            step += size
            if on_step is not None and on_step(step):
                guard.request()
            stop = guard.should_stop(step)
            reported = _at_call_end(run, state, step, history, reported, timer, stop)
            if reported == step:
                history = []
            if stop:
                run.log(
                    f"stopped (SIGTERM or stop request): saved step {step} to {run.ckpt.directory}; "
                    "rerun the command to resume"
                )
                break
    return state


def _at_call_end(run: _Run, state, step: int, history, reported: int, timer, stop: bool) -> int:
    """Logging, validation and checkpoints due at ``step``; returns the step metrics were read to."""
    config, total = run.config, int(run.config.num_train_steps)
    evaluate_now = due(step, int(config.eval_every_steps), total)
    save_now = stop or evaluate_now or due(step, int(config.checkpoint_every_steps), total)
    log_now = due(step, int(config.log_every_steps), total)
    if log_now or save_now:
        means = steps.check_finite(history, run.log, reported)
        reported = step
    if log_now:
        if run.workdir_lock is not None:
            run.workdir_lock.check()
        speed = timer.report(step)
        run.writer.write_scalars(step, {f"train/{k}": v for k, v in {**means, **speed}.items()})
        run.log(
            f"step {step}/{total}  loss {means['loss']:.4f}  grad_norm {means['grad_norm']:.4g}  "
            f"learning_rate {means['learning_rate']:.3g}  {speed['steps_per_second']:.2f} steps/s  "
            f"data wait {100 * speed['data_wait']:.0f}%  eta {writers.format_duration(speed['eta_seconds'])}"
        )
    scores = None
    if evaluate_now:
        if run.validation is None:
            run.validation = create_validation(config, run.model)
        scores = validate(
            config, run.validation, _local_copy(eval_variables(state)), step, run.writer, run.log
        )
    if save_now:
        manager.save(run.ckpt, state, meta=run.meta, metrics=scores)
    return reported


def _local_copy(tree: Any) -> Any:
    """One device's copy of a replicated tree (validation runs on one device, not on all)."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)
