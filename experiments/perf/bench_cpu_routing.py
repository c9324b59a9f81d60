"""Which kernels should run the CPU convolutions of each program: XLA's own or YNNPACK's?

Compiles the library's own programs twice in one process, with XLA's kernels
(``{"xla_cpu_experimental_ynn_fusion_type": ""}``, what ``XLA_FLAGS`` gave every program before
edsr-jax moved to per-program options) and with YNNPACK's (XLA's default), and times them in
alternating rounds: the training step (``train_step.compile_train_step``, batch of 48x48 LR
patches, EDSR baseline x2) and inference (``inference.make_upscaler`` on a square LR image). It
prints medians, the paired ratio (median over rounds of xla/ynn within a round) and which routing
``edsr_jax.compiler_options`` picks on this machine::

    python experiments/perf/bench_cpu_routing.py --rounds 11 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_models  # noqa: E402  (beside this script)

from edsr_jax import compiler_options, inference, optim, sharding, train_step  # noqa: E402

ROUTINGS = {"xla": {compiler_options.YNN_FUSION_TYPE: ""}, "ynn": {}}


def train_fns(model, variables, batch: int, patch: int) -> dict:
    """One training step per routing, each on its own copy of the state (the step donates it)."""
    cfg = types.SimpleNamespace(adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8)
    tx = optim.create_optimizer(cfg, model)
    mesh = sharding.create_mesh(jax.devices()[:1])
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (batch, patch, patch, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (batch, patch * model.scale, patch * model.scale, 3), dtype=np.uint8)
    data = sharding.make_global_batch({"low_res": lr, "high_res": hr}, mesh)
    fns = {}
    for name, options in ROUTINGS.items():
        state, shardings = train_step.create_train_state(model, tx, mesh, jax.random.PRNGKey(0))
        params = jax.device_put(jax.tree.map(jnp.copy, variables["params"]), sharding.replicated(mesh))
        step = train_step.compile_train_step(
            model, tx, optax.constant_schedule(1e-4), mesh, shardings, model.scale, compiler_options=options
        )
        holder = {"state": state.replace(params=params)}

        def run(step=step, holder=holder):
            holder["state"], metrics = step(holder["state"], data)
            return jax.block_until_ready(metrics["loss"])

        fns[name] = run
    return fns


def infer_fns(model, variables, size: int) -> dict:
    """The library's upscaler of a size x size LR image, per routing."""
    image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    ups = {
        name: inference.make_upscaler(model, variables, model.scale, compiler_options=options)
        for name, options in ROUTINGS.items()
    }
    outputs = {name: up(image) for name, up in ups.items()}
    diff = float(np.abs(outputs["xla"] - outputs["ynn"]).max())
    print(f"# inference: largest difference between the routings {diff:.3g} (on [0, 255])")
    return {name: (lambda up=up: up(image)) for name, up in ups.items()}


def summarize(times: dict[str, list[float]]) -> dict:
    paired = statistics.median(a / b for a, b in zip(times["xla"], times["ynn"], strict=True))
    return {
        "median_s": {name: statistics.median(t) for name, t in times.items()},
        "paired_xla_over_ynn": paired,
        "times": times,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=11, help="timed rounds after one warm-up")
    p.add_argument("--workloads", default="train,infer", help="comma-separated: train, infer")
    p.add_argument("--batch", type=int, default=16, help="training batch (48x48 LR patches)")
    p.add_argument("--patch", type=int, default=48, help="LR patch side of the training batch")
    p.add_argument("--size", type=int, default=256, help="LR side of the inference image")
    p.add_argument("--quick", action="store_true", help="a tiny model and sizes (a dry run)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        from edsr_jax import models

        model = models.EDSR(scale=2, num_blocks=1, num_features=8)
        variables = models.init(model, jax.random.PRNGKey(0))
        args.batch, args.patch, args.size = 2, 8, 16
    else:
        model, variables, _ = bench_models.build_models("edsr_baseline", 2, with_torch=False)
    avx512 = compiler_options.cpu_has_avx512()
    print(
        f"# jax {jax.__version__}, {platform.processor() or platform.machine()}, AVX-512: {avx512}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    results = {"jax": jax.__version__, "avx512": avx512, "rounds": args.rounds}
    builders = {
        compiler_options.TRAIN: lambda: train_fns(model, variables, args.batch, args.patch),
        compiler_options.INFER: lambda: infer_fns(model, variables, args.size),
    }
    for kind in args.workloads.split(","):
        times = bench_models.time_alternating(builders[kind](), args.rounds)
        summary = summarize(times)
        chosen = "xla" if compiler_options.xla_kernels_for(kind, avx512) else "ynn"
        summary["library_choice"] = chosen
        results[kind] = summary
        medians = summary["median_s"]
        print(
            f"{kind:<6} xla {medians['xla']:.3f} s  ynn {medians['ynn']:.3f} s  paired xla/ynn "
            f"{summary['paired_xla_over_ynn']:.3f}  library: {chosen}"
        )
    results["load_average_after"] = os.getloadavg()[0]
    print(f"# load average after {results['load_average_after']:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
