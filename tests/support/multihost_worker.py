"""One process of a multi-process training test (run as a script by tests/test_train_multihost.py).

Runs ``train.train_and_evaluate`` on a tiny config and writes, to ``--out`` (JSON) and
``--out`` + ``.npz`` (final parameters), what the test checks:

* ``shard``: the names of the training images this process loaded (``data.sources.load_pairs``);
* ``sampled``: per step, the image names of this process's patches (recomputed with the input
  pipeline's own ``image_schedule``) and a hash of the patches it produced;
* ``fed``: per step, a hash of this process's part of the global batch the step received;
* ``params``: per step, a SHA-256 of the parameters after the step (this process's copy) and
  their float64 sum.

``--num-processes 2 --process-id I --coordinator HOST:PORT`` joins a distributed run (CPU
collectives: gloo). ``--emulate-processes 2`` with one process feeds the global batch the two
processes would feed together (process 0's examples first), for a single-process reference.
The device count comes from XLA_FLAGS (set by the caller). ``--without-tensorflow`` makes
``import tensorflow`` and ``import clu`` fail, as on a machine with JAX only (and starts faster).
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
# B1 F8 on 8x8 LR patches; global batch 4 (one example per device in every layout tested).
TINY = {
    "model.num_blocks": "1", "model.num_features": "8", "batch_size": "4", "patch_size": "8",
    "lr_schedule": "step", "lr_decay_steps": "3", "learning_rate": "1e-3", "warmup_fraction": "0",
    "log_every_steps": "1", "checkpoint_every_steps": "2", "keep_checkpoints": "10",
    "eval_every_steps": "0", "eval.num_images": "1", "eval.image_crop": "8", "data.prefetch": "1",
}  # fmt: skip


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
    parser.add_argument("--emulate-processes", type=int, default=1)
    parser.add_argument("--without-tensorflow", action="store_true", help="as on a JAX-only machine")
    args = parser.parse_args(argv)

    if args.without_tensorflow:  # imports of these raise ImportError from now on
        for name in ("tensorflow", "clu", "tensorflow_datasets"):
            sys.modules[name] = None
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

    from edsr_jax import train
    from edsr_jax.cli import config_flags
    from edsr_jax.data import pipeline, sources

    record = {"process_index": jax.process_index(), "process_count": jax.process_count(),
              "local_devices": jax.local_device_count(), "devices": jax.device_count(),
              "shard": [], "sampled": {}, "fed": {}, "params": {}}  # fmt: skip

    load_pairs = sources.load_pairs

    def recording_load_pairs(data_config, split, *a, **k):
        pairs = load_pairs(data_config, split, *a, **k)
        if split == "train":
            record["shard"] += [n for n in pairs.names if n not in record["shard"]]
        return pairs

    sample_batch = pipeline.sample_batch

    def recording_sample_batch(pairs, **k):
        lr, hr = sample_batch(pairs, **k)
        ids = pipeline.image_schedule(
            k["seed"], k["step"], k["batch"], len(pairs), k["patches_per_image"],
            k["process_index"], k["process_count"],
        )  # fmt: skip
        entry = record["sampled"].setdefault(str(k["step"] + 1), {})  # (batch k trains step k+1)
        entry[str(k["process_index"])] = {"names": [pairs.names[i] for i in ids], "hash": digest(lr, hr)}
        return lr, hr

    sources.load_pairs = recording_load_pairs
    pipeline.sample_batch = recording_sample_batch

    if args.emulate_processes > 1:  # one process feeding what n processes would feed together
        create = pipeline.create_train_iterator
        n = args.emulate_processes

        def joined_iterator(config, *, start_step=0, process_index=0, process_count=1):
            assert (process_index, process_count) == (0, 1), (process_index, process_count)
            parts = [
                create(config, start_step=start_step, process_index=i, process_count=n) for i in range(n)
            ]
            for batches in zip(*parts, strict=False):
                yield {
                    "lr": np.concatenate([b["lr"] for b in batches]),
                    "hr": np.concatenate([b["hr"] for b in batches]),
                    "scale": batches[0]["scale"],
                }

        pipeline.create_train_iterator = joined_iterator

    compile_train_step = train.compile_train_step

    def recording_compile(*a, **k):
        step_fn = compile_train_step(*a, **k)

        def step(state, batch):
            local = [
                np.concatenate([np.asarray(s.data) for s in sorted(
                    batch[key].addressable_shards, key=lambda s: s.index[0].start or 0)])
                for key in ("lr", "hr")
            ]  # fmt: skip
            state, metrics = step_fn(state, batch)
            number = str(int(jax.device_get(state.step.addressable_data(0))))
            record["fed"][number] = digest(*local)
            leaves = [np.asarray(a.addressable_data(0)) for a in jax.tree.leaves(state.params)]
            record["params"][number] = {
                "sha": digest(*leaves),
                "sum": float(sum(np.sum(x, dtype=np.float64) for x in leaves)),
            }
            return state, metrics

        return step

    train.compile_train_step = recording_compile

    fields = {**TINY, "num_train_steps": str(args.steps), "data.cache_dir": args.cache_dir}
    config = config_flags.apply_overrides(config_flags.load_config(TEST_CONFIG), list(fields.items()))
    stop = (lambda step: step == args.stop_at) if args.stop_at else None
    state = train.train_and_evaluate(config, args.workdir, on_step=stop)
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
