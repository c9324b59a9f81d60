"""Training speed: ``edsr-jax train`` against the official recipe's PyTorch trainer, same config.

Both run as their users run them, each in a fresh process launched from here: ``edsr-jax train``
with the parity recipe's overrides (:func:`parity_torch.jax_overrides`: EDSR B4 F48 x2, batch 16,
48x48 LR patches, the skimage photographs, Adam 5e-4 constant, ``log_every_steps=10``), and the
PyTorch trainer of ``experiments/parity_torch.py`` (:func:`parity_torch.train_torch`: a
``DataLoader`` with ``--workers`` worker processes) in a child of this script. For each it
reports:

* ``steps_per_s``: after the first :data:`WARMUP_STEPS` steps (compilation, worker start-up and
  first decodes excluded); edsr-jax: from the arrival times of its "step N/T" log lines (each
  line waits for its step's result), PyTorch: from the end of each step;
* ``first_step_s``: from the launch of the process (interpreter, imports, data, model) to the end
  of its first step. PyTorch: measured. edsr-jax logs only every 10th step, so it is estimated:
  the step-10 line's time less 9 steps at the steady rate;
* ``total_s``: the process's whole wall time, start-up included (edsr-jax's also holds its
  validation of one image and its final checkpoint; the PyTorch child saves nothing);

and the ratio of steady steps/s, edsr-jax / PyTorch (target: at least :data:`TARGET_RATIO`).
With ``--rounds N`` the two alternate N times (PyTorch first) and the medians are reported.

    python experiments/perf/bench_trainer.py --json trainer.json
    python experiments/perf/bench_trainer.py --steps 40     # a smoke run (numbers: indicative)

Results: ``experiments/perf/RESULTS.md``, "Speed v2: PyTorch's fast modes, a whole trainer,
restarts" (give it the whole machine for a figure).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

EXPERIMENTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Steps excluded from the steady rate (compilation, worker start-up, first decodes).
WARMUP_STEPS = 20
# Target: edsr-jax's steady steps/s at least this many times PyTorch's.
TARGET_RATIO = 1.2
# The seed both trainers use.
SEED = 0


def load_parity():
    """``experiments/parity_torch.py`` as the module ``parity_torch``."""
    if "parity_torch" in sys.modules:
        return sys.modules["parity_torch"]
    spec = importlib.util.spec_from_file_location(
        "parity_torch", os.path.join(EXPERIMENTS, "parity_torch.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["parity_torch"] = module
    spec.loader.exec_module(module)
    return module


def recipe(steps: int, workers: int) -> argparse.Namespace:
    """The parity recipe (parity_torch's defaults) for ``steps`` steps, seed :data:`SEED`."""
    args = load_parity().parse_args(["--steps", str(steps), "--workers", str(workers), "--seeds", str(SEED)])
    args.seed = SEED
    return args


def torch_worker(out_path: str, steps: int, workers: int) -> int:
    """The child process: trains the PyTorch side and writes its times (``time.time()`` based)."""
    parity = load_parity()
    args = recipe(steps, workers)
    pairs = parity.load_pairs(parity.SCALE, args.patch)
    started = time.time()
    _, stats = parity.train_torch(pairs, args, skip_steps=WARMUP_STEPS)
    result = {**stats, "first_step_at": started + stats["first_step_s"], "train_started_at": started}
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


def run_torch(steps: int, workers: int, tmp: str) -> dict:
    """Launches the PyTorch child; ``{"steps_per_s", "first_step_s", "total_s"}``."""
    parity = load_parity()
    out = os.path.join(tmp, "torch.json")
    command = [sys.executable, os.path.abspath(__file__), "--steps", str(steps), "--workers", str(workers)]
    launched = time.time()
    result = subprocess.run(
        [*command, "--torch-worker", out], capture_output=True, text=True, env=parity.subprocess_env()
    )
    ended = time.time()
    if result.returncode != 0:
        raise RuntimeError(f"the PyTorch trainer exited with {result.returncode}:\n{result.stderr[-3000:]}")
    with open(out, encoding="utf-8") as f:
        child = json.load(f)
    return {
        "steps_per_s": child["steps_per_s"],
        "first_step_s": child["first_step_at"] - launched,
        "total_s": ended - launched,
    }


def estimate_first_step(steps: list[tuple[int, float]], launched: float, rate: float | None) -> float | None:
    """Seconds from launch to the end of step 1, from the first log line less its other steps."""
    if not steps or rate is None:
        return None
    step, at = steps[0]
    return at - launched - (step - 1) / rate


def run_jax(steps: int, tmp: str) -> dict:
    """Runs ``edsr-jax train`` on the recipe; ``{"steps_per_s", "first_step_s", "total_s"}``."""
    parity = load_parity()
    workdir = os.path.join(tmp, "jax")
    os.makedirs(workdir)
    try:
        run = parity.run_logged(
            parity.jax_command(recipe(steps, 0), SEED, workdir), os.path.join(tmp, "jax.log")
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rate = parity.logged_rate(run["steps"], WARMUP_STEPS)
    return {
        "steps_per_s": rate,
        "first_step_s": estimate_first_step(run["steps"], run["launched"], rate),
        "total_s": run["ended"] - run["launched"],
    }


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rounds: list[dict]) -> dict:
    """Medians over rounds per side and of the per-round ratio edsr-jax / PyTorch steps/s."""
    out = {
        side: {k: median(r[side][k] for r in rounds) for k in rounds[0][side]} for side in ("torch", "jax")
    }
    ratios = [
        r["jax"]["steps_per_s"] / r["torch"]["steps_per_s"]
        for r in rounds
        if r["jax"]["steps_per_s"] and r["torch"]["steps_per_s"]
    ]
    out["ratio"] = median(ratios)
    out["meets_target"] = out["ratio"] is not None and out["ratio"] >= TARGET_RATIO
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(summary: dict, steps: int, rounds: int) -> str:
    lines = [f"{steps} steps, {rounds} round(s), medians; steps/s after the first {WARMUP_STEPS} steps"]
    lines.append(f"{'trainer':<9} {'steps/s':>8} {'first step s':>13} {'total s':>8}")
    for side, name in (("torch", "PyTorch"), ("jax", "edsr-jax")):
        s = summary[side]
        lines.append(
            f"{name:<9} {_fmt(s['steps_per_s'], '>8.3f')} {_fmt(s['first_step_s'], '>13.1f')} "
            f"{s['total_s']:>8.1f}"
        )
    verdict = "meets" if summary["meets_target"] else "misses"
    lines.append(
        f"edsr-jax / PyTorch steps/s: {_fmt(summary['ratio'], '.2f')}x ({verdict} >= {TARGET_RATIO}x)"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--workers", type=int, default=2, help="PyTorch DataLoader worker processes")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds (PyTorch first)")
    p.add_argument("--json", default="", metavar="PATH")
    p.add_argument("--torch-worker", default="", help=argparse.SUPPRESS)  # (the child's output file)
    args = p.parse_args(argv)
    if args.torch_worker:
        return torch_worker(args.torch_worker, args.steps, args.workers)
    if args.steps <= WARMUP_STEPS or args.rounds < 1:
        p.error(f"need --steps > {WARMUP_STEPS} and --rounds >= 1, got {args.steps} and {args.rounds}")
    rounds = []
    with tempfile.TemporaryDirectory(prefix="bench_trainer_") as tmp:
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}: PyTorch ...", flush=True)
            torch_side = run_torch(args.steps, args.workers, tmp)
            print(f"round {i + 1}/{args.rounds}: edsr-jax ...", flush=True)
            rounds.append({"torch": torch_side, "jax": run_jax(args.steps, tmp)})
    summary = summarize(rounds)
    print(report(summary, args.steps, args.rounds))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            config = {"steps": args.steps, "workers": args.workers, "warmup_steps": WARMUP_STEPS}
            json.dump({"config": config, "rounds": rounds, "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
