"""Export time and file size per format, and ONNX Runtime CPU inference beside edsr-jax's.

For the EDSR baseline x2 and the full EDSR x2 (random weights), times ``export_model`` for every
format (and ONNX fp16) and reports the written size; then runs the baseline x2 on one 256x256 LR
image with edsr-jax (``make_upscaler``, jitted, warm) and ONNX Runtime (CPU provider, fp32 and
fp16), alternating, ``--repeats`` times each, and prints the medians.

    python experiments/perf/bench_export.py                 # a few minutes on 2 cores
    python experiments/perf/bench_export.py --models edsr_baseline --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from edsr_jax import inference, models
from edsr_jax.interop import export

ARCHS = {"edsr_baseline": models.edsr_baseline, "edsr": models.edsr}
VARIANTS = (*((f, False) for f in export.FORMATS), ("onnx", True))


def size_mb(path: str) -> float:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs) / 2**20
    return os.path.getsize(path) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="edsr_baseline,edsr")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import jax
    import onnxruntime

    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cpus")
    print("| model | format | export s | size MB |")
    print("|---|---|---|---|")
    onnx_paths = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            model = ARCHS[name](2)
            variables = models.init(model, jax.random.key(0))
            for fmt, fp16 in VARIANTS:
                start = time.perf_counter()
                (path,) = export.export_model(
                    model, variables, os.path.join(tmp, f"{name}_{fmt}{'16' if fp16 else ''}"), fmt, fp16=fp16
                )
                seconds = time.perf_counter() - start
                print(
                    f"| {name} x2 | {fmt}{' fp16' if fp16 else ''} | {seconds:.1f} | {size_mb(path):.1f} |",
                    flush=True,
                )
                if fmt == "onnx" and name == "edsr_baseline":
                    onnx_paths[fp16] = path
        if "edsr_baseline" not in args.models.split(","):
            return
        model = models.edsr_baseline(2)
        variables = models.init(model, jax.random.key(0))
        lr = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        upscale = inference.make_upscaler(model, variables, 2)
        sessions = {
            fp16: onnxruntime.InferenceSession(p, providers=["CPUExecutionProvider"])
            for fp16, p in onnx_paths.items()
        }
        x = lr.astype(np.float32).transpose(2, 0, 1)[None]
        runs = {
            "edsr-jax": lambda: upscale(lr),
            **{
                f"onnxruntime{' fp16' if k else ''}": (lambda s=s: s.run(None, {"lr": x}))
                for k, s in sessions.items()
            },
        }
        times = {k: [] for k in runs}
        for fn in runs.values():
            fn()  # compile / warm up
        for _ in range(args.repeats):  # alternate, the machine is shared
            for key, fn in runs.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
        reference = statistics.median(times["edsr-jax"])
        print(f"\nEDSR baseline x2, one 256x256 LR image, median of {args.repeats} alternating runs:")
        for key, values in times.items():
            median = statistics.median(values)
            print(f"- {key}: {median:.2f} s ({median / reference:.2f}x edsr-jax)")


if __name__ == "__main__":
    main()
