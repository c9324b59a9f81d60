"""GPU figures: EDSR x2 training speed in JAX vs PyTorch, MFU, input share, tiled memory.

Measures, on one accelerator, with batches that are already in memory:

1. ``train``: the real ``edsr_jax.train`` step (jit, donated state) on EDSR (B32, F256, x2), batch
   16 of 48x48 LR, in float32 and bfloat16 (float32 parameters); PyTorch eager on the same GPU in
   fp32 (TF32 off and on) and AMP bf16, channels_last. Steps/s, LR pixels/s, achieved TFLOP/s
   (analytic conv FLOPs, 3x forward) and MFU against ``--peak-tflops`` (default: the device's
   dense bf16 / TF32 / fp32 peak from a small table).
2. ``input``: the share of step time spent feeding batches: the edsr-jax numpy sampler
   (``data.pipeline.sample_rows`` on in-memory 2040x1356 images) + ``prefetch_to_device``,
   versus the same number of steps on one resident batch.
3. ``tiled``: x4 tiled inference (``make_upscaler(tile=...)``) of a 2040x1356 HR-sized image
   (510x339 LR) with EDSR x4; peak device memory from ``memory_stats()`` per tile size.

Nothing is downloaded; TensorFlow is not needed. ``--dry-run`` shrinks everything (B1, F8, batch
2 of 8x8, a 40x30 image) so the script can be checked on a CPU. Results go to stdout and, as JSON,
to ``--out`` (default ``$OUT/gpu_bench.json`` when ``$OUT`` is set).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from bench_models import edsr_forward_flops  # noqa: E402

from edsr_jax import inference, models, optim, sharding, train, train_step  # noqa: E402
from edsr_jax.data import cache as data_cache  # noqa: E402
from edsr_jax.data import pipeline as input_pipeline  # noqa: E402
from edsr_jax.data import sources as data_sources  # noqa: E402

# Dense peak TFLOP/s (bf16 tensor core, TF32 tensor core, plain fp32) of data-centre GPUs (SXM).
PEAKS = {"H100": (989.0, 494.7, 66.9), "H200": (989.0, 494.7, 66.9), "A100": (312.0, 156.0, 19.5)}


def device_peaks() -> tuple[float, float, float] | None:
    """(bf16, tf32, fp32) peak TFLOP/s of device 0, if its name is in PEAKS."""
    kind = jax.devices()[0].device_kind
    for name, peaks in PEAKS.items():
        if name in kind:
            return peaks
    return None


def timed_steps(run, steps: int) -> list[float]:
    """Per-step seconds of ``steps`` calls of ``run`` (each synchronising), after 2 warm-ups."""
    for _ in range(2):
        run()
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        run()
        out.append(time.perf_counter() - t0)
    return out


def make_jax_step(model, batch: int, patch: int, dtype):
    """(run, holder) for the real train step on one device with a resident uint8 batch."""
    import optax

    m = model.clone(dtype=dtype)
    cfg = types.SimpleNamespace(adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8)
    tx = optim.create_optimizer(cfg, m)
    mesh = sharding.create_mesh(jax.devices()[:1])
    state, shardings = train_step.create_train_state(m, tx, mesh, jax.random.PRNGKey(0))
    step = train_step.compile_train_step(m, tx, optax.constant_schedule(1e-4), mesh, shardings, model.scale)
    rng = np.random.default_rng(0)
    s = model.scale
    data = sharding.make_global_batch(
        {
            "lr": rng.integers(0, 256, (batch, patch, patch, 3), dtype=np.uint8),
            "hr": rng.integers(0, 256, (batch, patch * s, patch * s, 3), dtype=np.uint8),
        },
        mesh,
    )
    holder = {"state": state}

    def run(batch_data=None, sync=True):
        holder["state"], metrics = step(holder["state"], data if batch_data is None else batch_data)
        return float(metrics["loss"]) if sync else metrics  # float() waits for the step

    t0 = time.perf_counter()
    run()
    return run, time.perf_counter() - t0, mesh


def make_torch_step(arch, batch: int, patch: int, mode: str):
    """A PyTorch Adam/L1 step; mode: fp32, tf32 or amp_bf16 (all channels_last)."""
    import torch

    sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
    from support import torch_reference

    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.benchmark = True
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    net = (
        torch_reference.build_model(
            "edsr", arch["scale"], arch["num_blocks"], arch["num_features"], arch["res_scale"]
        )
        .train()
        .to(dev, memory_format=torch.channels_last)
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    s = arch["scale"]
    lr = torch.randint(0, 256, (batch, 3, patch, patch), dtype=torch.uint8, device=dev)
    hr = torch.randint(0, 256, (batch, 3, patch * s, patch * s), dtype=torch.uint8, device=dev)
    lr, hr = (
        lr.contiguous(memory_format=torch.channels_last),
        hr.contiguous(memory_format=torch.channels_last),
    )

    def run():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=mode == "amp_bf16"):
            sr = net(lr.float())
        loss = torch.nn.functional.l1_loss(sr.float(), hr.float())
        loss.backward()
        opt.step()
        return loss.item()  # synchronises

    return run


def bench_train(args, arch) -> list[dict]:
    """Step times of JAX fp32/bf16 and PyTorch fp32/tf32/amp_bf16."""
    model = models.EDSR(**arch)
    flops = (
        3
        * args.batch
        * edsr_forward_flops(args.patch, args.patch, arch["scale"], arch["num_blocks"], arch["num_features"])
    )
    peaks = device_peaks()
    rows = []
    engines = [("jax", "float32"), ("jax", "bfloat16")]
    if not args.no_torch:
        engines += [("torch", "fp32"), ("torch", "tf32"), ("torch", "amp_bf16")]
    for engine, mode in engines:
        first = None
        if engine == "jax":
            run, first, _ = make_jax_step(
                model, args.batch, args.patch, jnp.bfloat16 if mode == "bfloat16" else jnp.float32
            )
        else:
            run = make_torch_step(arch, args.batch, args.patch, mode)
        times = timed_steps(run, args.steps)
        med = statistics.median(times)
        peak = (
            None
            if peaks is None
            else {"bfloat16": peaks[0], "amp_bf16": peaks[0], "tf32": peaks[1]}.get(mode, peaks[2])
        )
        peak = args.peak_tflops or peak
        row = {
            "engine": engine,
            "mode": mode,
            "step_s": med,
            "steps_per_s": 1 / med,
            "lr_pixels_per_s": args.batch * args.patch**2 / med,
            "tflops": flops / med / 1e12,
            "mfu": None if not peak else flops / med / 1e12 / peak,
            "peak_tflops": peak,
            "first_step_s": first,
        }
        rows.append(row)
        mfu = "-" if row["mfu"] is None else f"{100 * row['mfu']:.1f}%"
        print(
            f"train {engine:5s} {mode:9s} {med * 1e3:9.2f} ms/step {row['tflops']:8.2f} TFLOP/s MFU {mfu}"
            + (f" (first step incl. compile {first:.1f} s)" if first else ""),
            flush=True,
        )
        del run
    by = {(r["engine"], r["mode"]): r["step_s"] for r in rows}
    if ("torch", "amp_bf16") in by:
        bf16 = by[("torch", "amp_bf16")] / by[("jax", "bfloat16")]
        fp32 = by[("torch", "tf32")] / by[("jax", "float32")]
        print(f"speed-up jax bf16 vs torch AMP bf16: {bf16:.2f}x; jax fp32 vs torch tf32: {fp32:.2f}x")
    return rows


class SyntheticSource(data_sources.PairSource):
    """n random HR images and their (unrelated, right-sized) LR images, made instead of decoded."""

    def __init__(self, n: int, hr_hw: tuple[int, int], scale: int):
        super().__init__([str(i) for i in range(n)], (scale,), {"source": "synthetic"})
        self.hr_hw, self.scale = hr_hw, scale

    def read_hr(self, i: int) -> np.ndarray:
        return np.random.default_rng(i).integers(0, 256, (*self.hr_hw, 3), dtype=np.uint8)

    def read_lr(self, i: int, scale: int) -> np.ndarray:
        h, w = self.hr_hw
        return np.random.default_rng(1000 + i).integers(0, 256, (h // scale, w // scale, 3), dtype=np.uint8)


def synthetic_pairs(n: int, hr_hw: tuple[int, int], scale: int) -> data_cache.PairCache:
    """The in-memory cache of a :class:`SyntheticSource`, every image already made."""
    pairs = data_cache.PairCache(SyntheticSource(n, hr_hw, scale))
    for i in range(n):
        pairs.pair(i, scale)
    return pairs


def bench_input(args, arch) -> dict:
    """Step time fed by the numpy sampler + prefetch_to_device vs on a resident batch."""
    model = models.EDSR(**arch)
    dtype = jnp.bfloat16
    run, _, mesh = make_jax_step(model, args.batch, args.patch, dtype)
    s = arch["scale"]
    pairs = synthetic_pairs(args.images, args.image_hw, s)

    def host_batches(start):
        step = start
        while True:
            lr, hr = input_pipeline.sample_rows(
                pairs, seed=0, step=step, batch=args.batch, rows=(0, args.batch), patch=args.patch, scale=s
            )
            yield {"lr": lr, "hr": hr, "scale": s}
            step += 1

    t0 = time.perf_counter()
    for step in range(args.steps):
        input_pipeline.sample_rows(
            pairs, seed=0, step=step, batch=args.batch, rows=(0, args.batch), patch=args.patch, scale=s
        )
    sample_s = (time.perf_counter() - t0) / args.steps

    # Neither loop waits per step (as in training): host sampling overlaps device compute.
    def loop(next_batch):
        for _ in range(2):
            run(next_batch(), sync=False)
        jax.block_until_ready(run(next_batch(), sync=False))
        t0 = time.perf_counter()
        for _ in range(args.steps - 1):
            run(next_batch(), sync=False)
        jax.block_until_ready(run(next_batch(), sync=False))
        return (time.perf_counter() - t0) / args.steps

    resident = loop(lambda: None)
    it = sharding.prefetch_to_device(host_batches(0), train.DEVICE_PREFETCH, mesh)
    fed = loop(lambda: {k: v for k, v in next(it).items() if k != "scale"})
    share = max(0.0, (fed - resident) / fed)
    print(
        f"input: sampler {sample_s * 1e3:.2f} ms/batch on the host; step {resident * 1e3:.2f} ms resident, "
        f"{fed * 1e3:.2f} ms fed -> input share {100 * share:.1f}% (bf16 step)",
        flush=True,
    )
    return {"sample_s": sample_s, "resident_step_s": resident, "fed_step_s": fed, "input_share": share}


def bench_tiled(args) -> list[dict]:
    """Peak device memory and time of tiled x4 inference on one large image, per tile size."""
    arch = dict(args.arch, scale=4)
    model = models.EDSR(**arch)
    variables = models.init(model, jax.random.PRNGKey(0))
    h, w = args.tiled_hw
    image = np.random.default_rng(0).integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    dev = jax.devices()[0]
    rows = []
    for tile in args.tiles:
        for dtype in [None if d == "float32" else jnp.bfloat16 for d in args.tiled_dtypes.split(",")]:
            up = inference.make_upscaler(model, variables, 4, tile=tile, dtype=dtype)
            stats = dev.memory_stats() or {}
            before = stats.get("peak_bytes_in_use")
            up(image)  # compile
            t0 = time.perf_counter()
            out = up(image)
            secs = time.perf_counter() - t0
            stats = dev.memory_stats() or {}
            peak = stats.get("peak_bytes_in_use")
            row = {
                "tile": tile,
                "dtype": "bfloat16" if dtype else "float32",
                "seconds": secs,
                "peak_bytes": peak,
                "peak_before": before,
                "out_shape": list(out.shape),
            }
            rows.append(row)
            gib = "n/a" if peak is None else f"{peak / 2**30:.2f} GiB"
            print(
                f"tiled x4 {w // 4}x{h // 4} tile {tile} {row['dtype']:8s}: {secs:.2f} s, peak device memory "
                f"{gib} (process-wide peak)",
                flush=True,
            )
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="train,input,tiled", help="comma-separated: train, input, tiled")
    p.add_argument("--steps", type=int, default=20, help="timed steps per engine")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--tiles", default="192,256,384", help="LR tile sizes for the tiled x4 part (> 2 x 68)")
    p.add_argument("--tiled-dtypes", default="float32,bfloat16", help="one per process for clean peaks")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="override the device peak (TFLOP/s)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch runs")
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, to check the script on a CPU")
    p.add_argument("--out", default="", help="JSON results file (default $OUT/gpu_bench.json)")
    args = p.parse_args(argv)
    args.arch = {"scale": 2, "num_blocks": 32, "num_features": 256, "res_scale": 0.1}
    args.image_hw, args.images, args.tiled_hw = (1356, 2040), 32, (1356, 2040)
    if args.dry_run:
        args.arch = {"scale": 2, "num_blocks": 1, "num_features": 8, "res_scale": 0.1}
        args.steps, args.batch, args.patch, args.tiles = 3, 2, 8, "32"
        args.image_hw, args.images, args.tiled_hw = (64, 64), 2, (120, 160)
    args.tiles = [int(t) for t in str(args.tiles).split(",")]
    if not args.out and os.environ.get("OUT"):
        args.out = os.path.join(os.environ["OUT"], "gpu_bench.json")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print(
        f"# jax {jax.__version__}, devices {jax.devices()}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
        f"tensorflow imported: {'tensorflow' in sys.modules}",
        flush=True,
    )
    results = {"devices": [d.device_kind for d in jax.devices()], "dry_run": args.dry_run, "arch": args.arch}
    parts = args.parts.split(",")
    if "train" in parts:
        results["train"] = bench_train(args, args.arch)
    if "input" in parts:
        results["input"] = bench_input(args, args.arch)
    if "tiled" in parts:
        results["tiled"] = bench_tiled(args)
    results["tensorflow_imported"] = "tensorflow" in sys.modules
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1)
        print(f"# wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
