"""The training step: the state, the losses, one optimizer step and its guards (pure functions).

A user's own loop::

    state, shardings = create_train_state(model, tx, mesh, jax.random.key(0))
    step = compile_train_step(model, tx, learning_rate_fn, mesh, shardings, scale=2)
    state, metrics = step(state, batch)
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from edsr_jax import compiler_options as xla_options
from edsr_jax import models, optim, sharding
from edsr_jax.errors import UserError


@flax.struct.dataclass
class TrainState:
    """Everything a step changes; ``ema_params``, ``batch_stats`` and ``loss_stats`` are None when unused."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    ema_params: Any = None
    batch_stats: Any = None
    loss_stats: Any = None


def create_train_state(
    model: models.SRModel,
    tx: optax.GradientTransformation,
    mesh,
    rng: jax.Array,
    *,
    ema: bool = False,
    compiler_options: Mapping[str, str] | None = None,
) -> tuple[TrainState, Any]:
    """``(state, state_shardings)``: initialised straight into replicated shardings, shapes first."""

    def init(rng):
        init_rng, state_rng = jax.random.split(rng)
        variables = models.init(model, init_rng)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=state_rng,
            ema_params=jax.tree.map(jnp.copy, params) if ema else None,
            batch_stats=variables.get("batch_stats"),
            loss_stats=optim.init_loss_stats(),
        )

    abstract = jax.eval_shape(init, rng)
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
    if compiler_options is None:
        compiler_options = xla_options.for_program(xla_options.TRAIN, xla_options.platform_of(mesh.devices))
    return jax.jit(init, out_shardings=shardings, compiler_options=dict(compiler_options))(rng), shardings


def abstract_state(state: TrainState, shardings: Any) -> TrainState:
    """The restore target for ``state``: ``jax.ShapeDtypeStruct`` leaves with shardings."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), state, shardings)


def l1_loss(sr: jax.Array, hr: jax.Array) -> jax.Array:
    """Mean absolute error in float32."""
    return jnp.mean(jnp.abs(sr.astype(jnp.float32) - hr.astype(jnp.float32)))


def l2_loss(sr: jax.Array, hr: jax.Array) -> jax.Array:
    """Mean squared error in float32 (SRResNet's loss in the paper's ablation)."""
    return jnp.mean(jnp.square(sr.astype(jnp.float32) - hr.astype(jnp.float32)))


# The losses ``config.loss`` may name.
LOSS_FUNCTIONS = {"l1": l1_loss, "l2": l2_loss}


def step_options(config, matmul_precision: str | None = None) -> dict:
    """The :func:`train_step` keywords a config sets, with the policy's matmul precision."""
    return {
        "loss": str(config.loss),
        "ema_decay": float(config.ema_decay),
        "grad_clip_norm": float(config.grad_clip_norm),
        "skip_loss_factor": float(config.skip_loss_factor),
        "matmul_precision": matmul_precision,
    }


def _forward(model, state: TrainState, params: Any, images: jax.Array, scale: int):
    """The training forward pass: ``(sr, new_batch_stats)``."""
    if state.batch_stats is None:
        return model.apply({"params": params}, images, scale=scale), None
    variables = {"params": params, "batch_stats": state.batch_stats}
    sr, updated = model.apply(variables, images, scale=scale, train=True, mutable=["batch_stats"])
    return sr, updated["batch_stats"]


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    model: models.SRModel,
    tx: optax.GradientTransformation,
    learning_rate_fn: optax.Schedule,
    scale: int,
    loss: str = "l1",
    ema_decay: float = 0.0,
    grad_clip_norm: float = 0.0,
    skip_loss_factor: float = 0.0,
    matmul_precision: str | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adam step on the loss of a batch of one scale (static: one program per scale).

    ``batch`` is ``{"low_res", "high_res"}`` uint8 patches; ``loss`` is ``"l1"`` or ``"l2"`` on [0, 255]; the
    guards are off at 0 (:mod:`edsr_jax.optim`). Returns ``(new_state, metrics)``: loss, grad_norm
    (before clipping), learning_rate, skipped, loss_mean.
    """
    lr_images = batch["low_res"].astype(jnp.float32)
    hr_images = batch["high_res"].astype(jnp.float32)
    loss_of = LOSS_FUNCTIONS[loss]
    if skip_loss_factor > 0 and state.loss_stats is None:
        raise ValueError("skip_loss_factor needs state.loss_stats (create_train_state makes them)")

    def loss_fn(params):
        sr, batch_stats = _forward(model, state, params, lr_images, scale)
        return loss_of(sr, hr_images), batch_stats

    with contextlib.ExitStack() as scope:
        if matmul_precision is not None:
            scope.enter_context(jax.default_matmul_precision(matmul_precision))
        (loss_value, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads, grad_norm = optim.clip_by_global_norm(grads, grad_clip_norm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    learning_rate = learning_rate_fn(state.step)
    params = optax.apply_updates(state.params, jax.tree.map(lambda u: -learning_rate * u, updates))
    params, opt_state = optim.keep_inactive(params, opt_state, state.params, state.opt_state, scale)
    new = state.replace(params=params, opt_state=opt_state, batch_stats=batch_stats)
    if ema_decay > 0:
        new = new.replace(ema_params=optim.ema_update(state.ema_params, params, ema_decay))
    skipped = jnp.zeros((), bool)
    loss_mean = jnp.zeros((), jnp.float32)
    if state.loss_stats is not None:
        loss_mean = optim.running_mean_loss(state.loss_stats)
        if skip_loss_factor > 0:
            skipped = optim.is_spike(loss_value, state.loss_stats, skip_loss_factor)
            keep = lambda new_leaf, old_leaf: jnp.where(skipped, old_leaf, new_leaf)
            new = jax.tree.map(keep, new, state)
        new = new.replace(loss_stats=optim.update_loss_stats(state.loss_stats, loss_value, ~skipped))
    metrics_ = {
        "loss": loss_value,
        "grad_norm": grad_norm,
        "learning_rate": learning_rate,
        "skipped": skipped.astype(jnp.int32),
        "loss_mean": loss_mean,
    }
    return new.replace(step=state.step + 1), metrics_


def compile_train_step(
    model,
    tx,
    learning_rate_fn,
    mesh,
    state_shardings,
    scale: int,
    *,
    compiler_options: Mapping[str, str] | None = None,
    **options,
) -> Callable:
    """``jit`` of :func:`train_step` for one scale: replicated state (donated), batch split."""
    if compiler_options is None:
        compiler_options = xla_options.for_program(xla_options.TRAIN, xla_options.platform_of(mesh.devices))
    step_fn = functools.partial(
        train_step, model=model, tx=tx, learning_rate_fn=learning_rate_fn, scale=scale, **options
    )
    batch_sharding = sharding.batch_sharding(mesh)
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, {"low_res": batch_sharding, "high_res": batch_sharding}),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
        compiler_options=dict(compiler_options),
    )


def train_steps(
    state: TrainState,
    batches: Mapping[str, jax.Array],
    count: jax.Array,
    *,
    scales: Sequence[int],
    **options,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Up to K :func:`train_step` calls in one program: the first ``count`` of K stacked batches.

    ``count`` is traced, so one program runs 1..K steps with the same bits as single steps, and small
    models are not bound by dispatch. HR patches arrive padded to the largest scale and are cropped.
    """
    steps = batches["low_res"].shape[0]
    patch = batches["low_res"].shape[2]

    def at_scale(scale):
        def step(state, lr, hr):
            hr = hr[:, : patch * scale, : patch * scale]
            return train_step(state, {"low_res": lr, "high_res": hr}, scale=scale, **options)

        return step

    branches = [at_scale(int(s)) for s in scales]

    def body(i, carry):
        state, metrics = carry
        lr = jax.lax.dynamic_index_in_dim(batches["low_res"], i, keepdims=False)
        hr = jax.lax.dynamic_index_in_dim(batches["high_res"], i, keepdims=False)
        if len(branches) == 1:
            state, step_metrics = branches[0](state, lr, hr)
        else:
            state, step_metrics = jax.lax.switch(batches["scale_index"][i], branches, state, lr, hr)
        metrics = {k: metrics[k].at[i].set(jnp.asarray(v, metrics[k].dtype)) for k, v in step_metrics.items()}
        return state, metrics

    shapes = jax.eval_shape(
        lambda s, lr, hr: branches[0](s, lr, hr)[1], state, batches["low_res"][0], batches["high_res"][0]
    )
    metrics = {k: jnp.zeros((steps,), v.dtype) for k, v in shapes.items()}
    return jax.lax.fori_loop(0, count, body, (state, metrics))


def one_train_step(
    state: TrainState, batches: Mapping[str, jax.Array], *, scale: int, **options
) -> tuple[TrainState, dict[str, jax.Array]]:
    """:func:`train_steps` for a stack of one batch at a known scale, as straight-line code.

    XLA:CPU runs loop and switch bodies several times slower than straight-line code (RESULTS.md
    "Steps per call on CPU"), so one step per call compiles this rather than the loop.
    """
    patch = batches["low_res"].shape[2]
    batch = {
        "low_res": batches["low_res"][0],
        "high_res": batches["high_res"][0, :, : patch * scale, : patch * scale],
    }
    state, metrics = train_step(state, batch, scale=scale, **options)
    return state, {k: jnp.asarray(v)[None] for k, v in metrics.items()}


def _first_host_value(values) -> int:
    """``values[0]`` on the host; a replicated global array is read from this process's copy."""
    if isinstance(values, jax.Array):
        values = values.addressable_data(0)
    return int(np.asarray(values)[0])


class TrainSteps:
    """``fn(state, batches, count) -> (state, metrics)``: a model's training programs.

    Stacks of one batch run :func:`one_train_step` of the batch's scale (picked on the host);
    longer stacks run the :func:`train_steps` loop. Both do the same math, but XLA compiles a loop
    body differently: on CPU, K > 1 agrees with K = 1 to float rounding, and any K > 1 with any
    other K > 1 to the bit.
    """

    def __init__(self, loop: Callable, single: Callable[[int], Callable], scales: Sequence[int]):
        self.loop, self._single, self.scales = loop, single, tuple(scales)
        self._singles: dict[int, Callable] = {}

    def _pick(self, batches, count):
        if batches["low_res"].shape[0] > 1:
            return self.loop, (batches, count)
        index = 0 if len(self.scales) == 1 else _first_host_value(batches["scale_index"])
        scale = self.scales[index]
        if scale not in self._singles:
            self._singles[scale] = self._single(scale)
        return self._singles[scale], ({"low_res": batches["low_res"], "high_res": batches["high_res"]},)

    def __call__(self, state, batches, count):
        fn, args = self._pick(batches, count)
        return fn(state, *args)

    def lower(self, state, batches, count):
        fn, args = self._pick(batches, count)
        return fn.lower(state, *args)


def compile_train_steps(
    model,
    tx,
    learning_rate_fn,
    mesh,
    state_shardings,
    scales: Sequence[int],
    *,
    compiler_options: Mapping[str, str] | None = None,
    **options,
) -> TrainSteps:
    """The jitted training programs (:class:`TrainSteps`), batches split along their example axis."""
    if compiler_options is None:
        compiler_options = xla_options.for_program(xla_options.TRAIN, xla_options.platform_of(mesh.devices))
    scales = tuple(int(s) for s in scales)
    step_args = dict(model=model, tx=tx, learning_rate_fn=learning_rate_fn, **options)
    stacked = sharding.stacked_batch_sharding(mesh)
    replicated = sharding.replicated(mesh)
    jit = functools.partial(
        jax.jit,
        out_shardings=(state_shardings, replicated),
        donate_argnums=0,
        compiler_options=dict(compiler_options),
    )
    loop = jit(
        functools.partial(train_steps, scales=scales, **step_args),
        in_shardings=(
            state_shardings,
            {"low_res": stacked, "high_res": stacked, "scale_index": replicated},
            replicated,
        ),
    )

    def single(scale: int) -> Callable:
        return jit(
            functools.partial(one_train_step, scale=scale, **step_args),
            in_shardings=(state_shardings, {"low_res": stacked, "high_res": stacked}),
        )

    return TrainSteps(loop, single, scales)


def check_finite(
    history: Sequence[tuple[int, int, Mapping[str, jax.Array]]],
    log: Callable[[str], None] | None = None,
    reported_through: int = -1,
) -> dict[str, float]:
    """Means over steps of the metrics of ``history``; logs spike-skipped steps.

    Raises:
      UserError: the first step whose loss or gradient norm is not finite.
    """
    fetched = jax.device_get([m for _, _, m in history])
    rows = []
    for (before, size, _), values in zip(history, fetched, strict=True):
        for i in range(size):
            rows.append((before + i + 1, {k: (v if np.ndim(v) == 0 else v[i]) for k, v in values.items()}))
    for step, v in rows:
        if log is not None and step > reported_through and int(v.get("skipped", 0)):
            log(
                f"step {step}: skipped the update: loss {float(v['loss']):.4g} > config.skip_loss_factor "
                f"x the running mean loss {float(v['loss_mean']):.4g}"
            )
        if not (np.isfinite(v["loss"]) and np.isfinite(v["grad_norm"])):
            raise UserError(
                f"non-finite training values at step {step}: loss={float(v['loss'])}, "
                f"grad_norm={float(v['grad_norm'])}; stopped without saving this state (earlier "
                "checkpoints are kept). Lower config.learning_rate, set config.grad_clip_norm, or check "
                "the data"
            )
    return {k: float(np.mean([v[k] for _, v in rows])) for k in rows[0][1]} if rows else {}
