"""Inference with YNNPACK's convolutions for that one program, against XLA's own kernels.

The library turns YNNPACK's convolutions off for the whole process (``edsr_jax/xla_flags.py``);
this compiles one inference program with them back on (``compiler_options`` of ``jax.jit``) and
times both, and PyTorch channels-last, alternating in one process (EDSR baseline, same weights):

    python experiments/perf/bench_ynn_infer.py --rounds 7 [--size 256] [--ensemble]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_models  # noqa: E402  (beside this script; imports edsr_jax first)
import jax  # noqa: E402

from edsr_jax import inference  # noqa: E402

YNN_CONVOLUTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="timed rounds after 1 warm-up")
    p.add_argument("--size", type=int, default=256, help="LR side of the image")
    p.add_argument("--ensemble", action="store_true", help="the x8 self-ensemble instead of one pass")
    args = p.parse_args(argv)

    model, variables, net = bench_models.build_models("edsr_baseline", 2, with_torch=True)
    x_np = np.random.default_rng(0).uniform(0, 255, (1, args.size, args.size, 3)).astype(np.float32)
    x = jax.device_put(x_np)

    def body(v, t):
        if args.ensemble:
            return inference.self_ensemble(lambda u: model.apply(v, u), t)
        return model.apply(v, t)

    xla, ynn = jax.jit(body), jax.jit(body, compiler_options=YNN_CONVOLUTIONS)
    uses_ynn = "__ynn_fusion" in ynn.lower(variables, x).compile().as_text()
    diff = float(np.abs(np.asarray(xla(variables, x)) - np.asarray(ynn(variables, x))).max())
    print(f"# YNNPACK fusions in the second program: {uses_ynn}; largest output difference {diff:.3g}")
    fns = {
        "xla": lambda: xla(variables, x).block_until_ready(),
        "ynn": lambda: ynn(variables, x).block_until_ready(),
    }
    built = bench_models._torch_variants().inference_variants(
        net, x_np, args.ensemble, ["channels_last"], transforms=inference.NUM_TRANSFORMS
    )
    bench_models._add_variants(fns, built)
    times = bench_models.time_alternating(fns, args.rounds)
    for name, seconds in times.items():
        rounds = " ".join(f"{t:.3f}" for t in seconds)
        print(f"{name:10s} median {statistics.median(seconds):.3f} s  {rounds}")
    for a, b in (("xla", "ynn"), ("xla", "torch_cl"), ("ynn", "torch_cl")):
        if a in times and b in times:
            paired = statistics.median(p / q for p, q in zip(times[a], times[b], strict=True))
            print(f"{a}/{b} paired {paired:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
