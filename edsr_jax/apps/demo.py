"""The embedded demo: train a small EDSR x2 on CPU in minutes, beat bicubic, show it in a picture.

It trains on scikit-image's bundled photographs (no download) and scores held-out ones (and Set5
if given); why a few hundred CPU steps suffice: RESULTS.md "Demo". A time budget is turned into a
step count, re-planned if steps slow down so the cosine schedule still ends inside it (a run cut
mid-schedule ends below bicubic); ``demo.json`` records the plan, and ``--steps N`` repeats it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from edsr_jax import atomic
from edsr_jax.apps import demo_report
from edsr_jax.configs import demo as demo_configs
from edsr_jax.configs.demo import SCALE
from edsr_jax.errors import UserError, listing

# Default time budget (seconds from the demo's start to the end of training) without --steps.
DEFAULT_SECONDS = 420.0
# Allowance for train_and_evaluate's set-up before its first step (imports, decoding, compiling).
TRAINING_SETUP_SECONDS = 30.0
# A budgeted run is stopped (and saved) once this many times the budget has passed.
DEADLINE_FACTOR = 1.1
# Re-plan when the projected end passes the budget by this factor, judged after a segment's
# first steps (dispatched ahead, they return early) over at least these steps and seconds.
REPLAN_TOLERANCE = 1.05
REPLAN_SKIP_STEPS = 5
REPLAN_MIN_STEPS = 20
REPLAN_MIN_SECONDS = 20.0
# Allowance for stopping and resuming (checkpoint save, restore, data, compile) when re-planning.
RESTART_SECONDS = 30.0
# Fewest steps a re-planned segment keeps (its cosine tail).
MIN_TAIL_STEPS = 10
# A plan is lengthened only by this factor or more, before this fraction is done (lr still high).
EXTEND_FACTOR = 1.25
EXTEND_BEFORE = 0.5
# Re-plans per run at most (each a checkpoint round trip), and the most one may multiply the plan.
MAX_REPLANS = 3
MAX_EXTENSION = 2.0
# Fewest steps a budgeted run plans (below this the model does not get past bicubic).
MIN_STEPS = 20
# Training steps timed by measure_step_seconds after one untimed step.
CALIBRATION_STEPS = 5
# The plan assumes steps this much slower than measured (the input pipeline shares the cores).
PLAN_MARGIN = 1.15
# Files the demo writes into the workdir besides the training files.
DEMO_JSON = "demo.json"
FIGURE_PNG = "demo_comparison.png"


def measure_step_seconds(
    config, steps: int = CALIBRATION_STEPS, progress: Callable[[], None] | None = None
) -> float:
    """Mean seconds per training step of ``config``'s model here and now, on a random batch.

    One untimed step (the compile), then ``steps`` timed; ``progress`` is called after each.
    """
    import jax

    from edsr_jax import optim, sharding, train, train_step

    mesh = sharding.create_mesh()
    model = train.create_model(config)
    tx = optim.create_optimizer(config, model)
    state, shardings = train_step.create_train_state(model, tx, mesh, jax.random.PRNGKey(0))
    step_fn = train_step.compile_train_step(
        model, tx, optim.create_learning_rate_fn(config), mesh, shardings, SCALE
    )
    rng = np.random.default_rng(0)
    b, p = int(config.batch_size), int(config.patch_size)
    batch = {
        "low_res": rng.integers(0, 256, (b, p, p, 3), dtype=np.uint8),
        "high_res": rng.integers(0, 256, (b, p * SCALE, p * SCALE, 3), dtype=np.uint8),
    }
    batch = jax.device_put(batch, sharding.batch_sharding(mesh))
    state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    if progress:
        progress()
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)
        if progress:
            progress()
    return (time.perf_counter() - start) / steps


def plan_steps(seconds: float, seconds_per_step: float) -> int:
    """Steps that fit in ``seconds`` at ``PLAN_MARGIN`` x the measured step time (>= MIN_STEPS)."""
    return max(MIN_STEPS, int(seconds / max(PLAN_MARGIN * seconds_per_step, 1e-9)))


class Pacer:
    """An ``on_step`` hook keeping a budgeted run inside its budget.

    From a segment's step rate it projects the end of training; too late (or, early on, far too
    soon) it stops with ``new_total``, the steps that fit, and the run resumes with that schedule.
    Past ``DEADLINE_FACTOR`` x the budget it stops for good.
    """

    def __init__(
        self,
        t0: float,
        seconds: float,
        total: int,
        *,
        replan: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.t0, self.seconds, self.total, self.clock = t0, float(seconds), int(total), clock
        self.replan = replan
        self.new_total: int | None = None
        self.rate: float | None = None
        self._first: int | None = None
        self._start: tuple[float, int] | None = None

    def __call__(self, step: int) -> bool:
        now = self.clock()
        if self._first is None:  # the first step of a segment includes set-up and compilation
            self._first = step
        if self._start is None and step >= self._first + REPLAN_SKIP_STEPS:
            self._start = (now, step)
        elapsed = now - self.t0
        if elapsed > DEADLINE_FACTOR * self.seconds:
            self.new_total = None
            return True
        if not self.replan or self._start is None:
            return False
        done, spent = step - self._start[1], now - self._start[0]
        if done < REPLAN_MIN_STEPS or spent < REPLAN_MIN_SECONDS:
            return False
        self.rate = spent / done
        left = self.seconds - elapsed - RESTART_SECONDS
        new_total = min(step + max(MIN_TAIL_STEPS, int(left / self.rate)), int(MAX_EXTENSION * self.total))
        too_slow = elapsed + (self.total - step) * self.rate > REPLAN_TOLERANCE * self.seconds
        too_fast = new_total >= EXTEND_FACTOR * self.total and step < EXTEND_BEFORE * self.total
        if (too_slow and new_total < self.total) or too_fast:
            self.new_total = new_total
            return True
        return False


def _read_demo_json(workdir: str) -> dict:
    path = os.path.join(workdir, DEMO_JSON)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({e}); use another workdir") from None


def check_workdir(workdir: str) -> None:
    """Refuses a ``workdir`` that is not missing, empty or a demo's: UserError naming what it holds."""
    from edsr_jax.checkpoint import layout

    layout.not_a_file(workdir)
    if not os.path.isdir(workdir) or os.path.isfile(os.path.join(workdir, DEMO_JSON)):
        return
    kind = layout.folder_kind(workdir)
    if kind is not None:
        raise UserError(
            f"workdir {workdir} holds {layout.KIND_NAMES.get(kind, kind)}, not a demo run; use another folder"
        )
    names = sorted(n for n in os.listdir(workdir) if not n.startswith("."))
    if names:
        raise UserError(
            f"workdir {workdir} holds files of no demo run ({listing(names)}); use another folder"
        )


def _bar(enabled: bool, total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True)


def run_demo(
    workdir: str,
    *,
    data_dir: str | None = None,
    steps: int | None = None,
    seconds: float = DEFAULT_SECONDS,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Trains the demo model in ``workdir``, scores it against bicubic, writes the figure.

    ``steps`` None trains as many steps as fit in ``seconds``; a finished workdir is re-scored, an
    interrupted one resumes its plan; ``data_dir`` holding ``Set5`` adds it to the scores.

    Returns:
      What ``demo.json`` holds: the plan, ``"results"``, ``"figure"`` and timings.

    Raises:
      UserError: bad arguments, or a workdir of another run (:func:`check_workdir`).
    """
    import edsr_jax
    from edsr_jax import inference, models, train
    from edsr_jax.checkpoint import layout
    from edsr_jax.imaging import files

    t0 = time.monotonic()
    if steps is not None and int(steps) < 1:
        raise UserError(f"steps must be at least 1, got {steps}")
    if steps is None and not seconds > 0:
        raise UserError(f"seconds must be positive, got {seconds}")
    workdir = os.path.abspath(workdir)
    check_workdir(workdir)
    os.makedirs(workdir, exist_ok=True)
    stored = _read_demo_json(workdir)
    if (
        stored.get("steps")
        and steps is not None
        and int(steps) != int(stored["steps"])
        and os.path.isdir(layout.checkpoint_dir(workdir))
    ):
        raise UserError(
            f"{workdir} holds a demo run of {stored['steps']} steps, not {steps}; use another workdir"
        )
    plan = {
        "steps": int(steps) if steps is not None else stored.get("steps"),
        "budget_seconds": None,
        "measured_seconds_per_step": stored.get("measured_seconds_per_step"),
    }
    budgeted = plan["steps"] is None
    if budgeted:
        bar = _bar(progress, CALIBRATION_STEPS + 1, "measuring step time (compile + steps)", "step")
        with bar:
            sps = measure_step_seconds(demo_configs.get_config(), progress=bar.update)
        left = float(seconds) - (time.monotonic() - t0) - TRAINING_SETUP_SECONDS
        plan.update(steps=plan_steps(left, sps), budget_seconds=float(seconds), measured_seconds_per_step=sps)
        log(
            f"planned {plan['steps']} steps ({sps:.2f} s/step measured, budget {seconds:.0f} s to the end "
            f"of training); "
            f"repeat this run exactly with --steps {plan['steps']}"
        )
    plan["segments"] = stored.get("segments", [])
    atomic.write_json(os.path.join(workdir, DEMO_JSON), {**stored, **plan})

    t_train = time.monotonic()
    bar = _bar(progress, plan["steps"], "training", "step")
    with bar:
        while True:
            config = demo_configs.get_config(plan["steps"])
            replan = len(plan["segments"]) < MAX_REPLANS
            pacer = Pacer(t0, seconds, plan["steps"], replan=replan) if budgeted else None

            def on_step(step: int, pacer=pacer) -> bool:
                bar.update(step - bar.n)
                return pacer is not None and pacer(step)

            state = train.train_and_evaluate(config, workdir, on_step=on_step, allow_other_files=True)
            trained = int(state.step)
            if pacer is None or pacer.new_total is None or trained >= plan["steps"]:
                break
            plan["segments"].append({"planned_steps": plan["steps"], "stopped_at": trained})
            log(
                f"steps take {pacer.rate:.2f} s, not as measured (busy machine?): re-planned from "
                f"{plan['steps']} to {pacer.new_total} steps at step {trained} (the schedule ends there)"
            )
            plan["steps"] = bar.total = pacer.new_total
            bar.refresh()
            atomic.write_json(os.path.join(workdir, DEMO_JSON), {**stored, **plan})
    train_seconds = time.monotonic() - t_train
    if trained < plan["steps"]:
        log(
            f"stopped at step {trained} of {plan['steps']}: {DEADLINE_FACTOR} x the time budget passed "
            "(busy machine?); rerun the same command to finish the planned steps"
        )

    model, variables = edsr_jax.load_model(workdir)
    log(
        f"model: EDSR x{SCALE}, {config.model.num_blocks} blocks, {config.model.num_features} features, "
        f"{models.count_params(variables['params']):,} parameters, trained {trained} steps "
        f"in {train_seconds:.0f} s"
    )
    sets = demo_report.evaluation_sets(config, data_dir)
    upscale_fn = inference.make_upscaler(model, variables, SCALE)
    bar = _bar(progress, 2 * sum(len(s) for _, s in sets), "evaluating (bicubic, EDSR)", "img")
    with bar:
        rows, outputs = demo_report.score_sets(sets, upscale_fn, progress=bar.update)
    figure_path = os.path.join(workdir, FIGURE_PNG)
    files.write_image(figure_path, demo_report.comparison_figure(demo_report.figure_panels(rows, outputs)))
    log(demo_report.format_results(rows))
    log(f"PSNR/SSIM on Y, shave {SCALE} (the benchmark protocol); figure: {figure_path}")
    log(
        f"checkpoint: {workdir} (edsr-jax eval --checkpoint {workdir} ..., "
        f"edsr-jax upscale --checkpoint {workdir} IN OUT)"
    )
    summary = {
        **stored,
        **plan,
        "trained_steps": trained,
        "train_seconds": train_seconds,
        "total_seconds": time.monotonic() - t0,
        "results": rows,
        "figure": FIGURE_PNG,
    }
    atomic.write_json(os.path.join(workdir, DEMO_JSON), summary)
    return summary
