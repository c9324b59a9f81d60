"""Seconds per validation and compilations per run of ``edsr-jax train``'s validation.

Trains a config through ``train.train_and_evaluate`` with a validation every ``--eval-every``
steps and times each call of ``train.validate``, counting the programs traced and compiled
inside it (JAX's monitoring events; the persistent compilation cache is off, so a compile is a
compile). It only wraps ``train.validate``, so it measures any checkout whose ``train`` module has
one: run it with ``PYTHONPATH=OTHER_CHECKOUT`` to measure that code the same way::

    python experiments/perf/bench_validation.py --config demo --steps 20 --eval-every 5 --json out.json
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="demo", help="a packaged config name or a file")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--images", type=int, default=3, help="validation images (config.eval.num_images)")
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
        **dict(kv.split("=", 1) for kv in args.override),
    }
    config = config_flags.apply_overrides(
        config_flags.load_config(args.config), [(k, str(v)) for k, v in fields.items()]
    )
    jax.config.update("jax_compilation_cache_dir", None)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        train.train_and_evaluate(config, os.path.join(workdir, "run"))
        total = time.perf_counter() - start
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
    }
    print(
        f"{len(validations)} validations: first {result['first_s']:.2f} s, later median "
        f"{result['later_median_s']:.2f} s; compiles in validations {result['compiles_in_validations']} "
        f"(traces {result['traces_in_validations']}); compiles in the run {result['run_compiles']}; "
        f"run {total:.1f} s; load {result['load_average']:.2f}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
