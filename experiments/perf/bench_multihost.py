"""Steps/s of the data-parallel train step: 1 process x 4 devices vs 2 processes x 2 devices (CPU).

The same global batch and model in both layouts; the 2-process layout runs through
``jax.distributed`` with gloo collectives over loopback, so the difference is the price of the
multi-process path (cross-process all-reduce of the gradients, global batch assembly). Synthetic
uint8 batches (the input pipeline is measured elsewhere); compile and 3 warm-up steps excluded.

    python experiments/perf/bench_multihost.py                  # B4 F32, batch 16, LR patch 24, 20 steps
    python experiments/perf/bench_multihost.py --steps 5 --num-blocks 1 --num-features 8   # quick

Prints a Markdown table (the command included) for experiments/perf/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# (processes, devices per process) layouts compared.
LAYOUTS = ((1, 4), (2, 2))


def child(args) -> None:
    """One process: time ``args.steps`` train steps; process 0 prints a JSON line."""
    import jax
    import numpy as np

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from edsr_jax import models, optim, sharding, train_step
    from edsr_jax.configs import default as default_config

    if args.num_processes > 1:
        sharding.maybe_initialize_distributed(
            coordinator_address=args.coordinator, num_processes=args.num_processes, process_id=args.process_id
        )
    model = models.EDSR(scale=2, num_blocks=args.num_blocks, num_features=args.num_features)
    tx = optim.create_optimizer(default_config.get_config(), model)
    mesh = sharding.create_mesh()
    state, shardings = train_step.create_train_state(model, tx, mesh, jax.random.PRNGKey(0))
    step = train_step.compile_train_step(model, tx, lambda s: 1e-4, mesh, shardings, scale=2)
    local = args.batch // jax.process_count()
    rng = np.random.default_rng(jax.process_index())
    p = args.patch
    batch = {
        "low_res": rng.integers(0, 256, (local, p, p, 3), np.uint8),
        "high_res": rng.integers(0, 256, (local, 2 * p, 2 * p, 3), np.uint8),
    }
    times = []
    for i in range(args.steps + 3):
        t = time.perf_counter()
        state, metrics = step(state, sharding.make_global_batch(batch, mesh))
        jax.block_until_ready(metrics["loss"])
        if i >= 3:
            times.append(time.perf_counter() - t)
    if jax.process_index() == 0:
        print(json.dumps({"steps_per_s": len(times) / sum(times), "devices": jax.device_count()}), flush=True)


def launch(processes: int, devices: int, args) -> float:
    """Runs one layout; returns process 0's steps/s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "JAX_PLATFORMS": "cpu",
    }
    common = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--num-processes",
        str(processes),
        "--coordinator",
        address,
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--patch",
        str(args.patch),
        "--num-blocks",
        str(args.num_blocks),
        "--num-features",
        str(args.num_features),
    ]
    procs = [
        subprocess.Popen(
            [*common, "--process-id", str(i)], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        for i in range(processes)
    ]
    try:
        outs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a benchmark process failed: {[p.returncode for p in procs]}")
    line = [x for x in outs[0].splitlines() if x.startswith("{")][-1]
    return float(json.loads(line)["steps_per_s"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--patch", type=int, default=24, help="LR patch side")
    parser.add_argument("--num-blocks", type=int, default=4)
    parser.add_argument("--num-features", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each layout")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", default="", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return 0
    results = {layout: [] for layout in LAYOUTS}
    for _ in range(args.repeats):  # alternate, so both layouts see the same machine load
        for layout in LAYOUTS:
            results[layout].append(launch(*layout, args))
    command = "python experiments/perf/bench_multihost.py " + " ".join(sys.argv[1:])
    print(
        f"`{command.strip()}` (EDSR B{args.num_blocks} F{args.num_features} x2, global batch "
        f"{args.batch}, LR patch {args.patch}, {args.steps} timed steps, "
        f"best of {args.repeats})\n"
    )
    print("| layout | steps/s (best) | all runs | vs 1 x 4 |\n|---|---|---|---|")
    base = max(results[LAYOUTS[0]])
    for (procs, devs), values in results.items():
        runs = ", ".join(f"{v:.2f}" for v in values)
        best = max(values)
        print(f"| {procs} process(es) x {devs} devices | {best:.2f} | {runs} | {best / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
