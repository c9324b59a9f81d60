"""Seconds per training step: one step per call against ``steps_per_call`` K (the fori_loop).

Times :func:`edsr_jax.train_step.compile_train_step` (one step, one dispatch) and
:func:`edsr_jax.train_step.compile_train_steps` with K = 1 and K = ``--k`` on the same model,
batches and state, alternating the variants round by round so that machine load hits them alike.
Prints the median seconds per step of each and the median of the per-round ratios to the single
step (< 1: faster). On a CPU the dispatch is cheap next to the step, so this checks that the loop
costs nothing; the launch-bound case it is for is an accelerator (``device_check.py``).

    python experiments/perf/bench_steps_per_call.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from edsr_jax import models, optim, sharding, train_step
from edsr_jax.configs import default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--k", type=int, default=4, help="steps per call of the stacked variant")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--features", type=int, default=48)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=48)
    args = parser.parse_args()

    model = models.EDSR(scale=2, num_blocks=args.blocks, num_features=args.features)
    config = default.get_config()
    schedule = optim.create_learning_rate_fn(config)
    tx = optim.create_optimizer(config, model)
    mesh = sharding.create_mesh()
    rng = np.random.default_rng(0)
    shape_lr = (args.k, args.batch, args.patch, args.patch, 3)
    shape_hr = (args.k, args.batch, 2 * args.patch, 2 * args.patch, 3)
    stacked = {
        "low_res": rng.uniform(0, 255, shape_lr).astype(np.float32),
        "high_res": rng.uniform(0, 255, shape_hr).astype(np.float32),
        "scale_index": np.zeros((args.k,), np.int32),
    }
    single = {"low_res": stacked["low_res"][0], "high_res": stacked["high_res"][0]}

    def fresh():
        return train_step.create_train_state(model, tx, mesh, jax.random.PRNGKey(0))

    state, shardings = fresh()
    one = train_step.compile_train_step(model, tx, schedule, mesh, shardings, 2)
    loop = train_step.compile_train_steps(model, tx, schedule, mesh, shardings, (2,))
    stacked_1 = {k: v[:1] for k, v in stacked.items()}
    variants = {
        "single step": (lambda s: one(s, single), 1),
        "steps_per_call 1": (lambda s: loop(s, stacked_1, np.int32(1)), 1),
        f"steps_per_call {args.k}": (lambda s: loop(s, stacked, np.int32(args.k)), args.k),
    }
    states = {name: fresh()[0] for name in variants}
    for name, (fn, _) in variants.items():  # compile and warm up
        states[name], _ = fn(states[name])
        jax.block_until_ready(states[name])
    per_step: dict[str, list[float]] = {name: [] for name in variants}
    calls = 4
    for _ in range(args.rounds):
        for name, (fn, k) in variants.items():
            start = time.perf_counter()
            for _ in range(calls):
                states[name], metrics = fn(states[name])
            jax.block_until_ready((states[name], metrics))
            per_step[name].append((time.perf_counter() - start) / (calls * k))
    base = per_step["single step"]
    print(
        f"EDSR B{args.blocks} F{args.features} x2, batch {args.batch}, {args.patch}x{args.patch}; "
        f"{jax.default_backend()}, {args.rounds} rounds"
    )
    print("| variant | median s/step (min-max) | paired ratio to single step |")
    print("|---|---|---|")
    for name, times in per_step.items():
        ratio = statistics.median(t / b for t, b in zip(times, base, strict=True))
        spread = f"{min(times):.4f}-{max(times):.4f}"
        print(f"| {name} | {statistics.median(times):.4f} ({spread}) | {ratio:.3f} |")


if __name__ == "__main__":
    main()
