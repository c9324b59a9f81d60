"""Seconds per validation and compilations per run of ``edsr-jax train``'s validation.

Trains a config through ``train.train_and_evaluate`` with a validation every ``--eval-every``
steps and times each call of ``train.validate``, counting the programs traced and compiled
inside it (JAX's monitoring events; the persistent compilation cache is off, so a compile is a
compile). It only wraps ``train.validate``, so it measures any checkout whose ``train`` module has
one: run it with ``PYTHONPATH=OTHER_CHECKOUT`` to measure that code the same way::

    python experiments/perf/bench_validation.py --config demo --steps 20 --eval-every 5 --json out.json

``--benchmark-dir DIR`` (a folder holding ``Set5``) also scores Set5 at each validation, and after
the run scores the final weights on every validation set both on the device in float32 (training's
validation) and on the host in float64 (``edsr-jax eval``'s protocol) and prints the largest
differences.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import jax

from edsr_jax import train
from edsr_jax.cli import config_flags

# JAX's monitoring events for tracing a function and for compiling a program.
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def compare_protocols(config, state) -> dict:
    """Largest |device float32 - host float64| PSNR and SSIM over the images of each validation set."""
    import numpy as np

    from edsr_jax import evaluate, inference

    model = train.create_model(config)
    variables = jax.device_get(train.eval_variables(state))
    validation = train.create_validation(config, model)
    out = {}
    for prefix, (protocol, by_scale) in validation.sets.items():
        psnr, ssim = [], []
        for scale, samples in by_scale.items():
            up = inference.make_upscaler(model, variables, scale)
            scorer = evaluate.DeviceScorer()
            for sample in samples:
                host = evaluate.host_scorer(sample, up(sample.lr), scale, protocol)
                device = scorer(sample, up.on_device(sample.lr), scale, protocol)
                psnr.append(abs(device[0] - host[0]))
                ssim.append(abs(device[1] - host[1]))
        out[prefix] = {"images": len(psnr), "psnr_db": float(np.max(psnr)), "ssim": float(np.max(ssim))}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo", help="a packaged config name or a file")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--images", type=int, default=3, help="validation images (config.eval.num_images)")
    p.add_argument("--benchmark-dir", default="", help="a folder holding Set5 (scored too)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    counts = {"traces": 0, "compiles": 0}

    def listener(event, duration, **kwargs):
        del duration, kwargs
        if event == TRACE_EVENT:
            counts["traces"] += 1
        elif event == COMPILE_EVENT:
            counts["compiles"] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    validations = []
    validate = train.validate

    def timed(*a, **k):
        before, start = dict(counts), time.perf_counter()
        out = validate(*a, **k)
        validations.append(
            {
                "seconds": time.perf_counter() - start,
                "traces": counts["traces"] - before["traces"],
                "compiles": counts["compiles"] - before["compiles"],
            }
        )
        return out

    train.validate = timed
    fields = {
        "num_train_steps": args.steps,
        "eval_every_steps": args.eval_every,
        "log_every_steps": args.eval_every,
        "checkpoint_every_steps": 0,
        "eval.num_images": args.images,
        "compilation_cache_dir": "",
        "eval.benchmark_dir": args.benchmark_dir,
        "eval.benchmarks": "('Set5',)",
        **dict(kv.split("=", 1) for kv in args.override),
    }
    config = config_flags.apply_overrides(
        config_flags.load_config(args.config), [(k, str(v)) for k, v in fields.items()]
    )
    jax.config.update("jax_compilation_cache_dir", None)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        state = train.train_and_evaluate(config, os.path.join(workdir, "run"))
        total = time.perf_counter() - start
    differences = compare_protocols(config, state) if hasattr(train, "create_validation") else None
    seconds = [v["seconds"] for v in validations]
    later = seconds[1:] or seconds
    result = {
        "checkout": os.path.dirname(os.path.dirname(train.__file__)),
        "validations": validations,
        "first_s": seconds[0],
        "later_median_s": statistics.median(later),
        "compiles_in_validations": sum(v["compiles"] for v in validations),
        "traces_in_validations": sum(v["traces"] for v in validations),
        "run_compiles": counts["compiles"],
        "run_s": total,
        "load_average": os.getloadavg()[0],
        "device_minus_host": differences,
    }
    print(
        f"{len(validations)} validations: first {result['first_s']:.2f} s, later median "
        f"{result['later_median_s']:.2f} s; compiles in validations {result['compiles_in_validations']} "
        f"(traces {result['traces_in_validations']}); compiles in the run {result['run_compiles']}; "
        f"run {total:.1f} s; load {result['load_average']:.2f}"
    )
    if differences:
        print(f"device float32 - host float64 scores, largest per set: {differences}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
