"""Training EDSR and MDSR: the paper's recipe, data-parallel with ``jit``, resumable to the bit.

Read top to bottom: :func:`create_model`, :func:`create_train_state`, :func:`train_step`,
:func:`compile_train_step`, :func:`validate`, :func:`train_and_evaluate`. The step functions are
pure; only :func:`train_and_evaluate` touches files, devices and the clock. The pieces it puts
together live in their own modules: the optimizer and its groups (:mod:`edsr_jax.optim`), the
batches (:mod:`edsr_jax.data.pipeline`), devices (:mod:`edsr_jax.sharding`), checkpoints
(:mod:`edsr_jax.checkpoint`), scoring (:mod:`edsr_jax.evaluate`) and summaries
(:mod:`edsr_jax.writers`).

Facts the code relies on:

* L1 loss on [0, 255] images; Adam and its MDSR groups as :mod:`edsr_jax.optim` describes.
* ``config.dtype = "bfloat16"`` computes in bf16; parameters, optimizer state and loss stay float32.
* Resume: batch ``k`` is a pure function of ``(seed, k, process)``, so restoring params, optimizer
  state, step and RNG and restarting the iterator at the step gives the uninterrupted result.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath

from edsr_jax import config_checks, evaluate, models, optim, sharding, writers
from edsr_jax.checkpoint import layout, lock, manager
from edsr_jax.errors import UserError
from edsr_jax.imaging import metrics

# Computation dtypes a config may name.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Files a training workdir holds besides checkpoints/ and model.json.
PARAMETERS_TXT = "parameters.txt"
# Global batches kept in flight to the devices while a step runs.
DEVICE_PREFETCH = 2
# What checkpoints without a "sampler" entry were drawn with (edsr-jax 0.1: crops of one image
# per batch, per-process image shards).
OLD_SAMPLER = "per-process single-image (edsr-jax 0.1)"


@flax.struct.dataclass
class TrainState:
    """Everything a step changes: step counter, float32 parameters, Adam state, RNG key."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


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
    else:
        raise UserError(f"config.model.arch must be 'edsr' or 'mdsr', got {arch!r}")
    return models.from_spec({"arch": arch, **spec}, dtype=DTYPES[config.dtype])


def create_train_state(
    model: models.SRModel, tx: optax.GradientTransformation, mesh, rng: jax.Array
) -> tuple[TrainState, Any]:
    """Initialises the state directly into its (replicated) shardings, shapes first.

    Returns:
      ``(state, state_shardings)``.
    """

    def init(rng):
        init_rng, state_rng = jax.random.split(rng)
        params = models.init(model, init_rng)["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=state_rng
        )

    abstract = jax.eval_shape(init, rng)
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
    return jax.jit(init, out_shardings=shardings)(rng), shardings


def abstract_state(state: TrainState, shardings: Any) -> TrainState:
    """``jax.ShapeDtypeStruct`` leaves with shardings: the restore target for ``state``."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state, shardings)


def l1_loss(sr: jax.Array, hr: jax.Array) -> jax.Array:
    """Mean absolute error in float32."""
    return jnp.mean(jnp.abs(sr.astype(jnp.float32) - hr.astype(jnp.float32)))


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    model: models.SRModel,
    tx: optax.GradientTransformation,
    learning_rate_fn: optax.Schedule,
    scale: int,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adam step on the L1 loss of a batch of one scale.

    Args:
      state: the current state.
      batch: ``{"lr": uint8 (b, p, p, 3), "hr": uint8 (b, p*scale, p*scale, 3)}``.
      model: the network.
      tx: from :func:`edsr_jax.optim.create_optimizer`.
      learning_rate_fn: from :func:`edsr_jax.optim.create_learning_rate_fn`; evaluated at
        ``state.step``.
      scale: the batch's scale (static: one compiled step per scale).

    Returns:
      ``(new_state, {"loss", "grad_norm", "learning_rate"})``.
    """
    lr_images = batch["lr"].astype(jnp.float32)
    hr_images = batch["hr"].astype(jnp.float32)

    def loss_fn(params):
        return l1_loss(model.apply({"params": params}, lr_images, scale=scale), hr_images)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    learning_rate = learning_rate_fn(state.step)
    params = optax.apply_updates(state.params, jax.tree.map(lambda u: -learning_rate * u, updates))
    params, opt_state = optim.keep_inactive(params, opt_state, state.params, state.opt_state, scale)
    metrics_ = {"loss": loss, "grad_norm": optax.global_norm(grads), "learning_rate": learning_rate}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics_


def compile_train_step(model, tx, learning_rate_fn, mesh, state_shardings, scale: int) -> Callable:
    """``jit`` of :func:`train_step` for one scale: replicated state (donated), batch split."""
    step_fn = functools.partial(
        train_step, model=model, tx=tx, learning_rate_fn=learning_rate_fn, scale=scale
    )
    batch_sharding = sharding.batch_sharding(mesh)
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, {"lr": batch_sharding, "hr": batch_sharding}),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )


def check_finite(history: Sequence[tuple[int, Mapping[str, jax.Array]]]) -> dict[str, float]:
    """Fetches per-step metrics; returns their means.

    Raises:
      RuntimeError: naming the first step whose loss or gradient norm is not finite.
    """
    values = jax.device_get([m for _, m in history])
    for (step, _), v in zip(history, values, strict=True):
        if not (np.isfinite(v["loss"]) and np.isfinite(v["grad_norm"])):
            raise RuntimeError(
                f"non-finite training values at step {step}: loss={float(v['loss'])}, "
                f"grad_norm={float(v['grad_norm'])}; stopped without saving this state (the last "
                "checkpoint is kept). Lower the learning rate or check the data."
            )
    return {k: float(np.mean([v[k] for v in values])) for k in values[0]} if values else {}


def validate(
    config, model: models.SRModel, params: Any, step: int, writer, log: Callable[[str], None]
) -> dict:
    """Scores ``params`` on the validation images (and benchmarks) through :mod:`edsr_jax.evaluate`.

    Writes the scalars and one image strip per scale; returns ``{"val_psnr": mean}`` (the metric
    that ranks checkpoints), or ``{}`` when nothing was scored.
    """
    from edsr_jax.data import benchmarks, pipeline

    samples = pipeline.create_eval_samples(config, "val", num_images=int(config.eval.num_images))
    variables, ensemble = {"params": params}, bool(config.eval.self_ensemble)
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


def load_init_params(path: str) -> Any:
    """Parameters to start from: a training workdir, an exported model, or an official ``.pt``."""
    if path.endswith((".pt", ".pth")):
        from edsr_jax.interop import torch as torch_interop

        return torch_interop.convert_state_dict(torch_interop.load_torch_state_dict(path))[1]["params"]
    from edsr_jax.checkpoint import exported

    return exported.load_model(path)[1]["params"]


def _local_copy(tree: Any) -> Any:
    """One device's copy of a replicated tree (evaluation runs on one device, not on all)."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)


def _start(config, workdir: str, state: TrainState, shardings: Any, ckpt, log) -> TrainState:
    """The state to train from: the latest complete checkpoint, else ``init_from``, else ``state``."""
    from edsr_jax.data import pipeline

    if jax.process_index() == 0:
        for step in manager.discard_incomplete(ckpt):
            log(f"deleted the incomplete checkpoint folder of step {step}")
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
    params, copied, not_copied = models.copy_matching(state.params, load_init_params(config.init_from))
    log(
        f"init_from {config.init_from}: copied {len(copied)} tensors; not copied (kept fresh): "
        f"{', '.join(not_copied) or 'none'}"
    )
    return state.replace(params=jax.device_put(params, shardings.params))


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

    Returns:
      The final (or, after SIGTERM or ``on_step``'s stop, the saved) ``TrainState``.

    Raises:
      UserError: bad configuration, a workdir of a different model, or one another run is
        training.
      RuntimeError: the loss or gradient norm became non-finite (the step and values are named).
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
    with _workdir_lock(workdir, is_chief) as workdir_lock:
        if workdir_lock is not None and workdir_lock.taken_over:
            log(f"warning: {workdir_lock.taken_over}")
        changed = layout.prepare_workdir(
            workdir, spec, config_checks.flatten(config.to_dict()), write=is_chief
        )
        if changed:
            log(config_checks.change_message(changed))
        learning_rate_fn = optim.create_learning_rate_fn(config)
        tx = optim.create_optimizer(config, model)
        state, shardings = create_train_state(model, tx, mesh, jax.random.PRNGKey(int(config.seed)))
        ckpt = manager.create_manager(
            layout.checkpoint_dir(workdir),
            keep=int(config.keep_checkpoints),
            async_save=bool(config.async_checkpoints),
        )
        state = _start(config, workdir, state, shardings, ckpt, log)
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
                            model, tx, learning_rate_fn, mesh, shardings, scale
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
                        means = check_finite(history)
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
                        check_finite(history)
                    scores = (
                        validate(config, model, _local_copy(state.params), step, writer, log)
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
