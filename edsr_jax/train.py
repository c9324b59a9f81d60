"""Training EDSR and MDSR: the paper's recipe, data-parallel with ``jit``, resumable to the bit.

Read top to bottom: :func:`create_model`, :func:`create_learning_rate_fn`, :func:`create_optimizer`,
:func:`create_train_state`, :func:`train_step`, :func:`eval_step`, :func:`evaluate`,
:func:`train_and_evaluate`. The step functions are pure; only :func:`train_and_evaluate` touches
files, devices and the clock.

Facts the code relies on:

* L1 loss on [0, 255] images, Adam (b1 0.9, b2 0.999, eps 1e-8) without weight decay; the learning
  rate is a function of ``state.step``, so a resumed run continues its schedule.
* MDSR: one scale per step (from the batch); Adam runs in separate groups (``shared`` and one per
  scale, each with its own moments and count) and only the shared group and that scale's group are
  updated: the other scales' parameters and Adam state stay bit-identical through the step.
* ``config.dtype = "bfloat16"`` computes in bf16; parameters, optimizer state and loss stay float32.
* Resume: batch ``k`` is a pure function of ``(seed, k, process)``, so restoring params, optimizer
  state, step and RNG and restarting the iterator at the step gives the uninterrupted result.
"""

from __future__ import annotations

import functools
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath

from edsr_jax import checkpointing, config_checks, models, sharding
from edsr_jax.errors import UserError

# Computation dtypes a config may name.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Optimizer group of parameters every scale uses.
SHARED_GROUP = "shared"
# Top-level parameter names that belong to one MDSR scale (pre_process_x3_0, upsample_x3, ...).
_SCALE_PARAM = re.compile(r"_x(\d+)(?:_|$)")
# Files a training workdir holds besides checkpoints/ and model.json.
PARAMETERS_TXT = "parameters.txt"
# Global batches kept in flight to the devices while a step runs.
DEVICE_PREFETCH = 2


@flax.struct.dataclass
class TrainState:
    """Everything a step changes: step counter, float32 parameters, Adam state, RNG key."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


# --- model and optimizer ------------------------------------------------------------------------


def create_model(config) -> models.SRModel:
    """The EDSR/MDSR that ``config.model`` describes, computing in ``config.dtype``.

    Raises:
      UserError: unknown architecture or dtype, or an EDSR config with several scales.
    """
    if config.dtype not in DTYPES:
        raise UserError(f"dtype must be one of {sorted(DTYPES)}, got {config.dtype!r}")
    arch, scales = config.model.arch, tuple(int(s) for s in config.scales)
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
    bad = [s for s in scales if s not in models.SUPPORTED_SCALES]
    if bad:
        raise UserError(f"config.scales {scales} has unsupported scales {bad}; use {models.SUPPORTED_SCALES}")
    return models.from_spec({"arch": arch, **spec}, dtype=DTYPES[config.dtype])


def create_learning_rate_fn(config) -> optax.Schedule:
    """The learning rate as a function of the step.

    ``config.lr_schedule == "step"``: the paper's ``learning_rate * lr_decay_factor ** (step //
    lr_decay_steps)``; ``"cosine"``: cosine decay to 0 over ``num_train_steps``. Both start with a
    linear warm-up over ``warmup_fraction * num_train_steps`` steps (0 in the paper's configs).

    Raises:
      UserError: unknown schedule name.
    """
    peak, total = float(config.learning_rate), int(config.num_train_steps)
    warmup = int(round(float(config.warmup_fraction) * total))
    if config.lr_schedule == "step":
        main = optax.exponential_decay(
            peak, int(config.lr_decay_steps), float(config.lr_decay_factor), staircase=True
        )
    elif config.lr_schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, max(1, total - warmup))
    else:
        raise UserError(f"lr_schedule must be 'step' or 'cosine', got {config.lr_schedule!r}")
    if warmup <= 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def param_group(name: str) -> str:
    """The optimizer group of a top-level parameter name: ``"x{s}"`` for per-scale modules."""
    match = _SCALE_PARAM.search(name)
    return f"x{match.group(1)}" if match else SHARED_GROUP


def param_labels(params: Mapping) -> dict:
    """A tree like ``params`` whose leaves are the group of each parameter."""
    return {name: _fill(sub, param_group(name)) for name, sub in params.items()}


def _fill(tree: Any, value: str) -> Any:
    """A tree like ``tree`` with every leaf replaced by ``value``."""
    return jax.tree.map(lambda _: value, tree)


def optimizer_groups(model: models.SRModel) -> tuple[str, ...]:
    """``("shared",)`` for EDSR; plus ``"x2"``, ``"x3"``... for MDSR."""
    if isinstance(model, models.MDSR):
        return (SHARED_GROUP, *(f"x{s}" for s in model.scales))
    return (SHARED_GROUP,)


def create_optimizer(config, model: models.SRModel) -> optax.GradientTransformation:
    """Adam's scaling (no learning rate: :func:`train_step` applies it), one state per group."""
    adam = lambda: optax.scale_by_adam(float(config.adam_b1), float(config.adam_b2), float(config.adam_eps))
    return optax.multi_transform({g: adam() for g in optimizer_groups(model)}, param_labels)


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


# --- steps --------------------------------------------------------------------------------------


def l1_loss(sr: jax.Array, hr: jax.Array) -> jax.Array:
    """Mean absolute error in float32."""
    return jnp.mean(jnp.abs(sr.astype(jnp.float32) - hr.astype(jnp.float32)))


def _keep_inactive(new: Any, old: Any, active: Sequence[str]) -> Any:
    """For every optimizer-group-keyed subtree, the new value if the group is active, else the old."""
    return {g: (new[g] if g in active else old[g]) for g in new}


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
      tx: from :func:`create_optimizer`.
      learning_rate_fn: from :func:`create_learning_rate_fn`; evaluated at ``state.step``.
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

    active = (SHARED_GROUP, f"x{scale}")
    labels = param_labels(state.params)
    params = jax.tree.map(lambda g, new, old: new if g in active else old, labels, params, state.params)
    opt_state = opt_state._replace(
        inner_states=_keep_inactive(opt_state.inner_states, state.opt_state.inner_states, active)
    )
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "learning_rate": learning_rate}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


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


def eval_step(params: Any, lr: jax.Array, *, model: models.SRModel, scale: int) -> jax.Array:
    """Super-resolves a batch and quantizes like a saved image: clip to [0, 255], round."""
    sr = model.apply({"params": params}, lr.astype(jnp.float32), scale=scale)
    return jnp.round(jnp.clip(sr, 0.0, 255.0))


def _upscaler(model, params, scale: int, self_ensemble: bool) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 (h, w, 3) -> SR float32 (h*s, w*s, 3) on whole images."""
    if self_ensemble:
        from edsr_jax import inference

        return inference.make_upscaler(model, {"params": params}, scale, self_ensemble=True)
    step = jax.jit(functools.partial(eval_step, model=model, scale=scale))
    return lambda lr: np.asarray(step(params, jnp.asarray(lr)[None]))[0]


def evaluate(
    model: models.SRModel,
    params: Any,
    samples: Mapping[int, Sequence[tuple[str, np.ndarray, np.ndarray]]],
    *,
    protocol: str,
    prefix: str,
    self_ensemble: bool = False,
) -> tuple[dict[str, float], dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Mean PSNR and SSIM per scale over whole images, with an evaluation protocol.

    Args:
      model: the network.
      params: its parameters.
      samples: ``{scale: [(name, lr uint8, hr uint8), ...]}``.
      protocol: ``"div2k"`` (RGB, shave scale+6) or ``"benchmark"`` (Y, shave scale).
      prefix: metric name prefix, e.g. ``"val"`` or ``"Set5"``.
      self_ensemble: average the 8 flips/transposes (EDSR+).

    Returns:
      ``({f"{prefix}/psnr_x{s}": dB, f"{prefix}/ssim_x{s}": ...}, {s: (lr, sr, hr) of the first
      image})``.
    """
    from edsr_jax import metrics as sr_metrics

    rules = sr_metrics.get_protocol(protocol)
    results, examples = {}, {}
    for scale, items in samples.items():
        if not items:
            continue
        upscale = _upscaler(model, params, scale, self_ensemble)
        scores = []
        for _, lr, hr in items:
            sr = upscale(lr)
            scores.append(sr_metrics.evaluate_pair(sr, hr, scale=scale, protocol=rules))
            if scale not in examples:
                examples[scale] = (lr, sr, hr)
        psnrs, ssims = np.asarray(scores, np.float64).T
        results[f"{prefix}/psnr_x{scale}"] = float(np.mean(psnrs))
        results[f"{prefix}/ssim_x{scale}"] = float(np.mean(ssims))
    return results, examples


# --- initialising from another model --------------------------------------------------------------


def load_init_params(path: str) -> Any:
    """Parameters to start from: a training workdir, an exported model, or an official ``.pt``."""
    if path.endswith((".pt", ".pth")):
        from edsr_jax import convert

        return convert.convert_state_dict(convert.load_torch_state_dict(path))[1]["params"]
    from edsr_jax import checkpoint

    return checkpoint.load_model(path)[1]["params"]


def copy_matching(target: Any, source: Any) -> tuple[Any, list[str], list[str]]:
    """Copies every ``source`` tensor whose path and shape match one in ``target``.

    Returns:
      ``(params, copied, not_copied)``: ``target`` with the matching tensors replaced (float32),
      and the ``/``-joined paths that were and were not copied.
    """
    flat_source = {
        "/".join(str(getattr(k, "key", k)) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(source)[0]
    }
    copied, not_copied = [], []

    def pick(path, leaf):
        key = "/".join(str(getattr(k, "key", k)) for k in path)
        other = flat_source.get(key)
        if other is not None and tuple(other.shape) == tuple(leaf.shape):
            copied.append(key)
            return np.asarray(jax.device_get(other), np.float32)
        not_copied.append(key)
        return leaf

    params = jax.tree_util.tree_map_with_path(pick, target)
    return params, copied, not_copied


# --- the program ----------------------------------------------------------------------------------


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


def summary_image(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int, crop: int) -> np.ndarray:
    """One image strip ``[LR (nearest) | bicubic | SR | HR]`` of a central LR crop, uint8."""
    from edsr_jax import image

    c = min(crop, *lr.shape[:2])
    y, x = (lr.shape[0] - c) // 2, (lr.shape[1] - c) // 2
    lr_c = lr[y : y + c, x : x + c]
    hr_window = (slice(y * scale, (y + c) * scale), slice(x * scale, (x + c) * scale))
    tiles = [
        np.repeat(np.repeat(lr_c, scale, 0), scale, 1),
        image.imresize(lr_c, scale),
        np.clip(np.round(sr[hr_window]), 0, 255).astype(np.uint8),
        hr[hr_window],
    ]
    return np.concatenate(tiles, axis=1)


def _flatten(config: Mapping, prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for a nested config; tuples and None as strings (for hparams)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, bool | int | float | str) else str(value)
    return out


class ConsoleWriter:
    """What training needs of a clu metric writer when clu/TensorFlow are missing: nothing is
    written to files (the console lines of :func:`train_and_evaluate` remain)."""

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        del step, scalars

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        del step, images

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        del hparams

    def flush(self) -> None:
        pass


_WARNED_NO_CLU: list[bool] = []  # (a warning once per process, not once per run)


def create_writer(workdir: str, is_chief: bool, total: int, every: int) -> tuple[Any, Callable[[int], Any]]:
    """TensorBoard writer and steps/s reporter (clu) on process 0; console-only stand-ins elsewhere.

    Without clu or TensorFlow (e.g. a GPU machine with only JAX installed) training still runs:
    a one-time warning, no TensorBoard events, the console lines stay.

    Returns:
      ``(writer, report)``: ``report(step)`` is called after every step.
    """
    try:
        from clu import metric_writers, periodic_actions
    except ImportError as e:
        if is_chief and not _WARNED_NO_CLU:
            _WARNED_NO_CLU.append(True)
            warnings.warn(
                f"TensorBoard summaries are off: {e} (pip install clu tensorflow-cpu to get them); "
                "training continues with console logging only",
                stacklevel=2,
            )
        return ConsoleWriter(), lambda step: None
    if not is_chief:
        return ConsoleWriter(), lambda step: None
    writer = metric_writers.create_default_writer(workdir)
    report = periodic_actions.ReportProgress(
        num_train_steps=total, writer=writer, every_steps=every, every_secs=None
    )
    return writer, report


def parameter_overview(params: Any) -> str:
    """A table of the parameters (clu's overview, or names, shapes and sizes without clu)."""
    try:
        from clu import parameter_overview as overview
    except ImportError:
        rows = [
            f"{jax.tree_util.keystr(path)}  {tuple(leaf.shape)}  {int(np.prod(leaf.shape)):,}"
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        ]
        return "\n".join([*rows, f"total {models.count_params(params):,}"])
    return overview.get_parameter_overview(params, include_stats=False)


def _local_copy(tree: Any) -> Any:
    """One device's copy of a replicated tree (evaluation runs on one device, not on all)."""
    return jax.tree.map(lambda a: a.addressable_data(0), tree)


def config_change_message(changed: list[tuple[str, Any, Any]], limit: int = 12) -> str:
    """One warning line naming the config entries that differ from the run's ``model.json``."""
    items = [f"{key} {old!r} -> {new!r}" for key, old, new in changed]
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return (
        "warning: this config differs from the one this workdir's run started with (model.json): "
        + "; ".join(items[:limit]) + more
        + ". Training resumes with the new values; from here the run is not the one an "
        "uninterrupted run of either config would give."
    )


def _console(is_chief: bool, text: str) -> None:
    if is_chief:
        print(text, flush=True)


def _validation(config, model, params, step, writer, log) -> dict[str, float]:
    """Scores ``params`` on the validation images (and benchmarks); returns ``{"val_psnr": ...}``."""
    from edsr_jax import input_pipeline

    samples = input_pipeline.create_eval_samples(config, "val")
    n = int(config.eval.num_images)
    samples = {s: items[:n] if n > 0 else items for s, items in samples.items()}
    ensemble = bool(config.eval.self_ensemble)
    results, examples = evaluate(
        model, params, samples, protocol=config.eval.protocol, prefix="val", self_ensemble=ensemble
    )
    if config.eval.benchmark_dir:
        from edsr_jax import benchmarks

        root = config.eval.benchmark_dir
        for name in config.eval.benchmarks:
            load = functools.partial(benchmarks.load_benchmark, root, name)
            bench = {s: [(x.name, x.lr, x.hr) for x in load(s)] for s in samples}
            results.update(
                evaluate(model, params, bench, protocol="benchmark", prefix=name, self_ensemble=ensemble)[0]
            )
    writer.write_scalars(step, results)
    crop = int(config.eval.image_crop)
    writer.write_images(step, {f"val/x{s}": summary_image(*ex, s, crop)[None] for s, ex in examples.items()})
    log(f"step {step}  " + "  ".join(f"{k} {v:.4f}" for k, v in sorted(results.items())))
    psnrs = [v for k, v in results.items() if k.startswith("val/psnr_")]
    return {checkpointing.BEST_METRIC: float(np.mean(psnrs))} if psnrs else {}


def train_and_evaluate(
    config, workdir: str, *, on_step: Callable[[int], bool | None] | None = None
) -> TrainState:
    """Trains (or resumes) ``config`` in ``workdir``; returns the final state.

    Writes ``workdir/model.json``, Orbax checkpoints under ``workdir/checkpoints`` (every
    ``checkpoint_every_steps``, at each evaluation, at the end, and on SIGTERM), TensorBoard
    events and ``parameters.txt``. Rerunning on the same workdir continues from the latest
    complete checkpoint; ``config.init_from`` is used only when there is none.

    Args:
      config: an ``ml_collections.ConfigDict`` (see ``configs/default.py``).
      workdir: the run's directory.
      on_step: called with the step number after every step (e.g. a progress bar); a true return
        value saves a checkpoint and stops, as SIGTERM does.

    Returns:
      The final (or, after SIGTERM or ``on_step``'s stop, the saved) ``TrainState``.

    Raises:
      UserError: bad configuration, or a workdir of a different model.
      RuntimeError: the loss or gradient norm became non-finite (the step and values are named).
    """
    config_checks.check_config(config)  # before anything is created
    sharding.maybe_initialize_distributed(bool(config.distributed))
    if config.compilation_cache_dir:  # (JAX also reads JAX_COMPILATION_CACHE_DIR itself)
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(config.compilation_cache_dir))
    from edsr_jax import input_pipeline

    is_chief = jax.process_index() == 0
    log = functools.partial(_console, is_chief)
    workdir = checkpointing.absolute(workdir)
    mesh = sharding.create_mesh()
    sharding.check_batch_size(int(config.batch_size), mesh)
    model = create_model(config)
    spec = models.model_spec(model)
    changed = checkpointing.prepare_workdir(workdir, spec, _flatten(config.to_dict()), write=is_chief)
    if changed:
        log(config_change_message(changed))
    learning_rate_fn = create_learning_rate_fn(config)
    tx = create_optimizer(config, model)
    state, shardings = create_train_state(model, tx, mesh, jax.random.PRNGKey(int(config.seed)))
    manager = checkpointing.create_manager(
        checkpointing.checkpoint_dir(workdir),
        keep=int(config.keep_checkpoints),
        async_save=bool(config.async_checkpoints),
    )
    if is_chief:
        for step in checkpointing.discard_incomplete(manager):
            log(f"deleted the incomplete checkpoint folder of step {step}")
    restored = checkpointing.restore(manager, abstract_state(state, shardings))
    if restored is not None:
        state = restored
        log(f"resumed from {checkpointing.checkpoint_dir(workdir)} at step {int(state.step)}")
    elif config.init_from:
        params, copied, not_copied = copy_matching(state.params, load_init_params(config.init_from))
        state = state.replace(params=jax.device_put(params, shardings.params))
        log(f"init_from {config.init_from}: copied {len(copied)} tensors; not copied (kept fresh): "
            f"{', '.join(not_copied) or 'none'}")  # fmt: skip
    start, total = int(state.step), int(config.num_train_steps)
    meta = {"model_spec": spec, "process_count": jax.process_count()}

    writer, report = create_writer(workdir, is_chief, total, int(config.log_every_steps))
    if is_chief:
        (epath.Path(workdir) / PARAMETERS_TXT).write_text(parameter_overview(state.params) + "\n")
        log(f"{spec}: {models.count_params(state.params):,} parameters ({PARAMETERS_TXT}); "
            f"{mesh.devices.size} device(s), {jax.process_count()} process(es); "
            f"steps {start} -> {total}")  # fmt: skip
        if start == 0:
            writer.write_hparams(_flatten(config.to_dict()))
    log_every, ckpt_every = int(config.log_every_steps), int(config.checkpoint_every_steps)
    eval_every = int(config.eval_every_steps)
    step_fns: dict[int, Callable] = {}
    history: list = []
    t_log, step_log = time.time(), start
    try:
        with checkpointing.PreemptionGuard(manager) as guard:
            batches = input_pipeline.prefetch_to_device(
                input_pipeline.create_train_iterator(config, start_step=start), DEVICE_PREFETCH, mesh
            ) if start < total else iter(())  # fmt: skip
            step = start
            while step < total:
                batch = next(batches)
                scale = int(batch["scale"])
                if scale not in step_fns:
                    step_fns[scale] = compile_train_step(model, tx, learning_rate_fn, mesh, shardings, scale)
                state, step_metrics = step_fns[scale](state, {"lr": batch["lr"], "hr": batch["hr"]})
                step += 1
                history.append((step, step_metrics))
                report(step)
                if on_step is not None and on_step(step):
                    guard.request()
                stop = guard.should_stop(step)
                evaluate_now = step == total or (eval_every > 0 and step % eval_every == 0)
                save_now = stop or evaluate_now or (ckpt_every > 0 and step % ckpt_every == 0)
                if step % log_every == 0 or step == total:
                    means = check_finite(history)
                    history = []
                    rate = (step - step_log) / max(time.time() - t_log, 1e-9)
                    t_log, step_log = time.time(), step
                    writer.write_scalars(step, {f"train/{k}": v for k, v in means.items()})
                    log(f"step {step}/{total}  loss {means['loss']:.4f}  grad_norm {means['grad_norm']:.4g}  "
                        f"lr {means['learning_rate']:.3g}  {rate:.2f} steps/s")  # fmt: skip
                elif save_now:
                    check_finite(history)
                scores = None
                if evaluate_now:
                    scores = _validation(config, model, _local_copy(state.params), step, writer, log)
                if save_now:
                    checkpointing.save(manager, state, meta=meta, metrics=scores)
                if stop:
                    log(f"stopped (SIGTERM or stop request): saved step {step} to {manager.directory}; "
                        "rerun the command to resume")
                    break
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.flush()
    return state
