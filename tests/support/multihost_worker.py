"""One process of a multi-process training test (run as a script by tests/test_train_multihost.py).

Runs ``train.train_and_evaluate`` on ``configs/test.py`` and writes, to ``--out`` (JSON) and
``--out`` + ``.npz`` (final parameters), what the test checks:

* ``sampled``: per step, the rows of the global batch this process built (``[start, stop)``) and
  a hash of each row's LR and HR patch (from ``data.pipeline.sample_rows``);
* ``fed``: per step, a hash of this process's part of the global batch the step received;
* ``params``: per step, a SHA-256 of the parameters after the step (this process's copy) and
  their float64 sum.

``--num-processes 2 --process-id I --coordinator HOST:PORT`` joins a distributed run (CPU
collectives: gloo). The device count comes from XLA_FLAGS (set by the caller).
``--device-order interleaved`` hands ``train_and_evaluate`` the devices in the order ``[p0d0,
p1d0, p0d1, p1d1, ...]`` (as a TPU torus walk interleaves hosts); ``requested`` and ``mesh``
record the process index of each device handed over and of each device of the mesh.
``--without-tensorflow`` hides TensorFlow, as on a machine without it (``support`` must be on
PYTHONPATH).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

# tests/support/ -> the repository root (the worker runs as a script: no `support` package import).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_CONFIG = os.path.join(ROOT, "configs", "test.py")
# configs/test.py as it is, but for the checkpoint cadence and one validation image.
OVERRIDES = {
    "checkpoint_every_steps": "10",
    "keep_checkpoints": "10",
    "eval_every_steps": "0",
    "eval.num_images": "1",
}


def digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--stop-at", type=int, default=0, help="ask the loop to save and stop here")
    parser.add_argument("--cache-dir", default="")
    parser.add_argument("--coordinator", default="")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--without-tensorflow", action="store_true", help="as on a JAX-only machine")
    parser.add_argument("--device-order", choices=("default", "interleaved"), default="default")
    args = parser.parse_args(argv)

    if args.without_tensorflow:
        from support.no_tensorflow import hide_tensorflow

        hide_tensorflow()
    import edsr_jax  # noqa: F401, I001  (XLA CPU defaults first)
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from edsr_jax import sharding

    if args.num_processes > 1:
        sharding.maybe_initialize_distributed(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    import numpy as np

    from edsr_jax import train, train_step
    from edsr_jax.cli import config_flags
    from edsr_jax.data import pipeline

    record = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "devices": jax.device_count(),
        "sampled": {},
        "fed": {},
        "params": {},
    }

    sample_rows = pipeline.sample_rows

    def recording_sample_rows(pairs, **k):
        lr, hr = sample_rows(pairs, **k)
        entry = record["sampled"].setdefault(str(k["step"] + 1), {})  # (batch k trains step k+1)
        entry["rows"] = list(k["rows"])
        entry["hashes"] = [digest(a, b) for a, b in zip(lr, hr, strict=True)]
        entry["hash"] = digest(lr, hr)
        return lr, hr

    pipeline.sample_rows = recording_sample_rows

    devices = None
    if args.device_order == "interleaved":  # [p0d0, p1d0, p0d1, p1d1, ...]
        by_process = [[d for d in jax.devices() if d.process_index == p] for p in range(jax.process_count())]
        devices = [d for column in zip(*by_process, strict=True) for d in column]
        record["requested"] = [d.process_index for d in devices]
    create_mesh = sharding.create_mesh

    def recording_create_mesh(*a, **k):
        mesh = create_mesh(*a, **k)
        record["mesh"] = [d.process_index for d in mesh.devices.flat]
        return mesh

    sharding.create_mesh = recording_create_mesh

    compile_train_steps = train_step.compile_train_steps

    def recording_compile(*a, **k):
        steps_fn = compile_train_steps(*a, **k)

        def steps(state, batches, count):
            assert int(count) == 1  # (one step per call: config.steps_per_call is 1 here)
            local = [
                np.concatenate(
                    [
                        np.asarray(s.data)[0]
                        for s in sorted(batches[key].addressable_shards, key=lambda s: s.index[1].start or 0)
                    ]
                )
                for key in ("low_res", "high_res")
            ]
            state, metrics = steps_fn(state, batches, count)
            number = str(int(jax.device_get(state.step.addressable_data(0))))
            record["fed"][number] = digest(*local)
            leaves = [np.asarray(a.addressable_data(0)) for a in jax.tree.leaves(state.params)]
            record["params"][number] = {
                "sha": digest(*leaves),
                "sum": float(sum(np.sum(x, dtype=np.float64) for x in leaves)),
            }
            return state, metrics

        return steps

    train_step.compile_train_steps = recording_compile

    fields = {**OVERRIDES, "num_train_steps": str(args.steps), "data.cache_dir": args.cache_dir}
    config = config_flags.apply_overrides(config_flags.load_config(TEST_CONFIG), list(fields.items()))
    stop = (lambda step: step == args.stop_at) if args.stop_at else None
    state = train.train_and_evaluate(config, args.workdir, on_step=stop, devices=devices)
    record["final_step"] = int(jax.device_get(state.step.addressable_data(0)))
    flat = jax.tree_util.tree_flatten_with_path(state.params)[0]
    np.savez(
        args.out + ".npz", **{jax.tree_util.keystr(p): np.asarray(a.addressable_data(0)) for p, a in flat}
    )
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
