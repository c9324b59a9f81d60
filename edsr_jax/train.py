"""Training EDSR and MDSR: the paper's recipe, data-parallel with ``jit``, resumable to the bit.

Read top to bottom: :func:`create_model`, :func:`validate`, :func:`train_and_evaluate`; the
step it runs (``TrainState``, ``create_train_state``, ``train_step``, ``compile_train_step``:
pure functions, re-exported here) lives in :mod:`edsr_jax.train_step`. Only
:func:`train_and_evaluate` touches files, devices and the clock. The pieces it puts together live
in their own modules: the optimizer, its groups and guards (:mod:`edsr_jax.optim`), the
batches (:mod:`edsr_jax.data.pipeline`), devices (:mod:`edsr_jax.sharding`), checkpoints
(:mod:`edsr_jax.checkpoint`), scoring (:mod:`edsr_jax.evaluate`) and summaries
(:mod:`edsr_jax.writers`).

Facts the code relies on:

* L1 loss on [0, 255] images (L2 with ``config.loss = "l2"``, SRResNet's); Adam and its MDSR
  groups as :mod:`edsr_jax.optim` describes, and the options the paper has not (EMA of the weights,
  gradient clipping, spike skipping: ``config.ema_decay``, ``grad_clip_norm``, ``skip_loss_factor``).
* ``config.dtype = "bfloat16"`` computes in bf16; parameters, optimizer state and loss stay float32.
* Resume: batch ``k`` is a pure function of ``(seed, k)``, so restoring the state (params, Adam,
  step, RNG, and the EMA, batch-norm averages and running loss when the run has them) and
  restarting the iterator at the step gives the uninterrupted result, bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from edsr_jax import config_checks, evaluate, models, optim, sharding, writers
from edsr_jax.checkpoint import layout, lock, manager
from edsr_jax.errors import UserError
from edsr_jax.imaging import metrics
from edsr_jax.train_step import (  # noqa: F401  (the step's API, re-exported for callers of train)
    LOSSES,
    TrainState,
    abstract_state,
    check_finite,
    compile_train_step,
    create_train_state,
    l1_loss,
    l2_loss,
    step_options,
    train_step,
)

# Computation dtypes a config may name.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Files a training workdir holds besides checkpoints/ and model.json.
PARAMETERS_TXT = "parameters.txt"
# Global batches kept in flight to the devices while a step runs.
DEVICE_PREFETCH = 2
# What checkpoints without a "sampler" entry were drawn with (edsr-jax 0.1: crops of one image
# per batch, per-process image shards).
OLD_SAMPLER = "per-process single-image (edsr-jax 0.1)"


def create_model(config) -> models.SRModel:
    """The EDSR/MDSR that ``config.model`` describes, computing in ``config.dtype``.

    Raises:
      UserError: unknown architecture or dtype, or an EDSR config with several scales.
    """
    if config.dtype not in DTYPES:
        raise UserError(f"config.dtype must be one of {sorted(DTYPES)}, got {config.dtype!r}")
    arch, scales = config.model.arch, tuple(int(s) for s in config.scales)
    bad = [s for s in scales if s not in models.SUPPORTED_SCALES]
    if bad:
        raise UserError(f"config.scales {scales} has unsupported scales {bad}; use {models.SUPPORTED_SCALES}")
    spec = {
        "num_blocks": int(config.model.num_blocks),
        "num_features": int(config.model.num_features),
        "res_scale": float(config.model.res_scale),
    }
    if arch == "edsr":
        if len(scales) != 1:
            raise UserError(f"an EDSR upscales by one factor, but config.scales is {scales}")
        spec["scale"] = scales[0]
    elif arch == "mdsr":
        spec["scales"] = list(scales)
    elif arch == "srresnet":
        if len(scales) != 1:
            raise UserError(f"an SRResNet upscales by one factor, but config.scales is {scales}")
        spec = {"scale": scales[0], "num_blocks": spec["num_blocks"], "num_features": spec["num_features"]}
    else:
        raise UserError(f"config.model.arch must be 'edsr', 'mdsr' or 'srresnet', got {arch!r}")
    return models.from_spec({"arch": arch, **spec}, dtype=DTYPES[config.dtype])


def eval_variables(state: TrainState) -> dict:
    """The variables validation scores: the EMA of the weights when the run keeps one (else the
    weights), with the batch-norm running averages when the model has them."""
    variables = {"params": state.params if state.ema_params is None else state.ema_params}
    if state.batch_stats is not None:
        variables["batch_stats"] = state.batch_stats
    return variables


def validate(
    config, model: models.SRModel, variables: dict, step: int, writer, log: Callable[[str], None]
) -> dict:
    """Scores ``variables`` (:func:`eval_variables`) on the validation images (and benchmarks)
    through :mod:`edsr_jax.evaluate`.

    Writes the scalars and one image strip per scale; returns ``{"val_psnr": mean}`` (the metric
    that ranks checkpoints), or ``{}`` when nothing was scored.
    """
    from edsr_jax.data import benchmarks, pipeline

    samples = pipeline.create_eval_samples(config, "val", num_images=int(config.eval.num_images))
    ensemble = bool(config.eval.self_ensemble)
    strips = {}

    def keep_first(scale, sample, sr):
        if scale not in strips:
            strips[scale] = writers.summary_image(
                sample.lr, sr, sample.hr, scale, int(config.eval.image_crop)
            )

    protocol = metrics.get_protocol(config.eval.protocol)
    scalars = evaluate.as_scalars(
        evaluate.score_model(
            model, variables, samples, protocol=protocol, self_ensemble=ensemble, on_output=keep_first
        ),
        "val",
    )
    for name in config.eval.benchmarks if config.eval.benchmark_dir else ():
        bench = {s: benchmarks.load_benchmark(config.eval.benchmark_dir, name, s) for s in samples}
        results = evaluate.score_model(
            model, variables, bench, protocol=metrics.BENCHMARK, self_ensemble=ensemble
        )
        scalars.update(evaluate.as_scalars(results, name))
    writer.write_scalars(step, scalars)
    writer.write_images(step, {f"val/x{s}": strip[None] for s, strip in strips.items()})
    log(f"step {step}  " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(scalars.items())))
    psnrs = [v for k, v in scalars.items() if k.startswith("val/psnr_")]
    return {manager.BEST_METRIC: float(np.mean(psnrs))} if psnrs else {}


# --- helpers of the program -----------------------------------------------------------------------


def load_init_params(path: str) -> tuple[Any, str]:
    """Parameters to start from, and which: an official ``.pt``, an exported model, or a training
    workdir's best checkpoint by validation PSNR (its latest when none was scored), as the official
    ``--pre_train`` takes ``model_best.pt``. The note says which step and why ("" if not a workdir)."""
    if path.endswith((".pt", ".pth")):
        from edsr_jax.interop import torch as torch_interop

        return torch_interop.convert_state_dict(torch_interop.load_torch_state_dict(path))[1]["params"], ""
    from edsr_jax.checkpoint import exported

    _, variables, note = exported.load_model_with_note(path, which=manager.BEST_OR_LATEST)
    return variables["params"], note


def _local_copy(tree: Any) -> Any:
    """One device's copy of a replicated tree (evaluation runs on one device, not on all)."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)


def _start(config, workdir: str, state: TrainState, shardings: Any, ckpt, log) -> TrainState:
    """The state to train from: the latest complete checkpoint, else ``init_from``, else ``state``."""
    from edsr_jax.data import pipeline

    if jax.process_index() == 0:
        for step, aside in manager.set_aside_incomplete(ckpt):
            log(f"moved the incomplete checkpoint folder of step {step} to {aside}")
    restored = manager.restore(ckpt, abstract_state(state, shardings))
    if restored is not None:
        step = int(restored.step)
        log(f"resumed from {layout.checkpoint_dir(workdir)} at step {step}")
        sampler = manager.read_meta(ckpt, step).get("sampler", OLD_SAMPLER)
        if sampler != pipeline.SAMPLER:
            log(
                f"warning: this run's checkpoints were written with the {sampler} batch sampler; from step "
                f"{step} it continues with the {pipeline.SAMPLER} one (every batch draws {config.batch_size} "
                "different images, the same on any number of processes), so its batches differ from "
                "what the old code would have drawn"
            )
        return restored
    if not config.init_from:
        return state
    init_params, note = load_init_params(config.init_from)
    params, copied, not_copied = models.copy_matching(state.params, init_params)
    log(
        f"init_from {config.init_from}{f' ({note})' if note else ''}: copied {len(copied)} tensors; "
        "not copied (kept fresh): "
        f"{', '.join(not_copied) or 'none'}"
    )
    return state.replace(params=jax.device_put(params, shardings.params))


def _complete_state(state: TrainState, fresh: TrainState, log) -> TrainState:
    """Fills the optional fields a restored or ``init_from`` state lacks from the fresh one; the EMA
    of a run at step 0 starts at its (possibly copied-in) parameters."""
    step, ema = int(state.step), state.ema_params
    if fresh.ema_params is not None and (ema is None or step == 0):
        if step > 0:
            log(f"config.ema_decay is set but checkpoint {step} has no EMA: it starts from the weights")
        ema = jax.tree.map(jnp.copy, state.params)
    pick = lambda value, default: default if value is None else value
    return state.replace(
        ema_params=ema,
        batch_stats=pick(state.batch_stats, fresh.batch_stats),
        loss_stats=pick(state.loss_stats, fresh.loss_stats),
    )


@contextlib.contextmanager
def _workdir_lock(workdir: str, is_chief: bool):
    """Process 0 holds the workdir's lock for the run; the other processes check that it does."""
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


def train_and_evaluate(
    config,
    workdir: str,
    *,
    on_step: Callable[[int], bool | None] | None = None,
    devices: Sequence[jax.Device] | None = None,
    allow_other_files: bool = False,
) -> TrainState:
    """Trains (or resumes) ``config`` in ``workdir``; returns the final state.

    Takes the workdir's lock first (:mod:`edsr_jax.checkpoint.lock`: one trainer per workdir).
    Writes ``workdir/model.json``, Orbax checkpoints under ``workdir/checkpoints`` (every
    ``checkpoint_every_steps``, at each evaluation, at the end, and on SIGTERM), TensorBoard
    events and ``parameters.txt``. Rerunning on the same workdir continues from the latest
    complete checkpoint; ``config.init_from`` is used only when there is none.

    Args:
      config: an ``ml_collections.ConfigDict`` (fields: ``edsr_jax/configs/default.py``).
      workdir: the run's directory (local or ``gs://``).
      on_step: called with the step number after every step (e.g. a progress bar); a true return
        value saves a checkpoint and stops, as SIGTERM does.
      devices: the devices to train on (default: all devices of all processes). The batches do
        not depend on them: a run resumed on other devices continues with the same batches.
      allow_other_files: train in a ``workdir`` that holds files of no edsr-jax run (never in an
        exported model: :func:`edsr_jax.checkpoint.layout.check_training_folder`).

    Returns:
      The final (or, after SIGTERM or ``on_step``'s stop, the saved) ``TrainState``.

    Raises:
      UserError: bad configuration, a workdir of a different model or that is not a training
        workdir, one another run is training, or a non-finite loss or gradient norm (the step and
        values are named). A run that fails before its first checkpoint leaves the workdir as it
        found it (:func:`edsr_jax.checkpoint.layout.removed_if_it_fails_early`).
    """
    config_checks.check_config(config)  # before anything is created
    sharding.maybe_initialize_distributed(bool(config.distributed))
    from edsr_jax import compile_cache  # the persistent XLA cache (restarts skip compiling)

    compile_cache.enable(str(config.compilation_cache_dir), os.environ)  # before the first compile
    from edsr_jax.data import pipeline

    is_chief = jax.process_index() == 0
    log = functools.partial(print, flush=True) if is_chief else (lambda text: None)
    workdir = layout.absolute(workdir)
    mesh = sharding.create_mesh(devices)
    rows = sharding.process_rows(int(config.batch_size), mesh)  # (checks the batch size first)
    model = create_model(config)
    spec = models.model_spec(model)
    layout.check_training_folder(workdir, allow_other_files=allow_other_files)
    with (
        layout.removed_if_it_fails_early(workdir, is_chief=is_chief),
        _workdir_lock(workdir, is_chief) as workdir_lock,
    ):
        if workdir_lock is not None and workdir_lock.taken_over:
            log(f"warning: {workdir_lock.taken_over}")
        changed = layout.prepare_workdir(
            workdir, spec, config_checks.flatten(config.to_dict()), write=is_chief
        )
        changed = config_checks.changes_that_matter(changed)
        if changed:
            log(config_checks.change_message(changed))
        learning_rate_fn = optim.create_learning_rate_fn(config)
        tx = optim.create_optimizer(config, model)
        ema = float(config.ema_decay) > 0
        fresh, shardings = create_train_state(model, tx, mesh, jax.random.PRNGKey(int(config.seed)), ema=ema)
        ckpt = manager.create_manager(
            layout.checkpoint_dir(workdir),
            keep=int(config.keep_checkpoints),
            async_save=bool(config.async_checkpoints),
        )
        state = _complete_state(_start(config, workdir, fresh, shardings, ckpt, log), fresh, log)
        start, total = int(state.step), int(config.num_train_steps)
        meta = {"model_spec": spec, "process_count": jax.process_count(), "sampler": pipeline.SAMPLER}

        log_every, ckpt_every, eval_every = (
            int(config.log_every_steps),
            int(config.checkpoint_every_steps),
            int(config.eval_every_steps),
        )
        writer = writers.create_writer(workdir, is_chief)
        if is_chief:
            (epath.Path(workdir) / PARAMETERS_TXT).write_text(writers.parameter_overview(state.params) + "\n")
            log(
                f"{spec}: {models.count_params(state.params):,} parameters ({PARAMETERS_TXT}); "
                f"{mesh.devices.size} device(s), {jax.process_count()} process(es); steps {start} -> {total}"
            )
            if start == 0:
                writer.write_hparams(config_checks.flatten(config.to_dict()))
        step_fns: dict[int, Callable] = {}
        history: list = []
        reported_through = start  # skipped steps are logged once, when their metrics are fetched
        timer = writers.StepTimer(start, total)
        try:
            with manager.PreemptionGuard(ckpt) as guard:
                batches = iter(())
                if start < total:
                    local = pipeline.create_train_iterator(config, start_step=start, rows=rows)
                    batches = sharding.prefetch_to_device(local, DEVICE_PREFETCH, mesh)
                step = start
                while step < total:
                    waiting = time.perf_counter()
                    batch = next(batches)
                    timer.waited(time.perf_counter() - waiting)
                    scale = int(batch["scale"])
                    if scale not in step_fns:
                        step_fns[scale] = compile_train_step(
                            model, tx, learning_rate_fn, mesh, shardings, scale, **step_options(config)
                        )
                    state, step_metrics = step_fns[scale](state, {"lr": batch["lr"], "hr": batch["hr"]})
                    step += 1
                    history.append((step, step_metrics))
                    if on_step is not None and on_step(step):
                        guard.request()
                    stop = guard.should_stop(step)
                    evaluate_now = step == total or (eval_every > 0 and step % eval_every == 0)
                    save_now = stop or evaluate_now or (ckpt_every > 0 and step % ckpt_every == 0)
                    if step % log_every == 0 or step == total:
                        means = check_finite(history, log, reported_through)
                        reported_through = step
                        history = []
                        if workdir_lock is not None:
                            workdir_lock.check()
                        speed = timer.report(step)
                        writer.write_scalars(step, {f"train/{k}": v for k, v in {**means, **speed}.items()})
                        log(
                            f"step {step}/{total}  loss {means['loss']:.4f}  "
                            f"grad_norm {means['grad_norm']:.4g}  "
                            f"lr {means['learning_rate']:.3g}  {speed['steps_per_second']:.2f} steps/s  "
                            f"data wait {100 * speed['data_wait']:.0f}%  "
                            f"eta {writers.format_duration(speed['eta_seconds'])}"
                        )
                    elif save_now:
                        check_finite(history, log, reported_through)
                        reported_through = step
                    scores = (
                        validate(config, model, _local_copy(eval_variables(state)), step, writer, log)
                        if evaluate_now
                        else None
                    )
                    if save_now:
                        manager.save(ckpt, state, meta=meta, metrics=scores)
                    if stop:
                        log(
                            f"stopped (SIGTERM or stop request): saved step {step} to {ckpt.directory}; "
                            "rerun the command to resume"
                        )
                        break
        finally:
            ckpt.wait_until_finished()
            ckpt.close()
            writer.close()
    return state
