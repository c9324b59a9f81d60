"""Input pipeline throughput: LR/HR patch pairs per second on DIV2K-sized images, and cache memory.

Writes ``--images`` DIV2K-sized PNG pairs (2040x1356 HR, smoothed noise, LR x2/x4) in the DIV2K
folder layout into a temporary folder, then for each scale builds the real training iterator
(``edsr_jax.data.pipeline.create_train_iterator``: decoded-image cache, numpy sampler inside
tf.data, prefetch) and times windows of ``--steps`` batches after ``--warmup`` batches, alternating
variants (1 or 2 parallel sampler calls, the bare numpy sampler) and keeping each one's best
window (the machine is shared). It also checks that the prefetched, parallel pipeline yields
exactly the batches of the pure (seed, step) function.

    python experiments/perf/bench_input_pipeline.py            # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import ml_collections
import numpy as np
from PIL import Image

import edsr_jax  # noqa: F401  (XLA defaults before JAX starts)
from edsr_jax.data import pipeline as input_pipeline
from edsr_jax.data import sources as data_sources

# DIV2K's typical HR size (width x height).
HR_W, HR_H = 2040, 1356


def natural_ish(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smoothed noise at several scales (edges and flat areas, like a photo), uint8 (h, w, 3)."""
    out = np.zeros((h, w, 3), np.float32)
    for cell in (256, 64, 16, 4):
        coarse = rng.normal(size=(h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        up = np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:h, :w]
        out += up * cell**0.5
    out = (out - out.mean()) / out.std() * 50 + 120
    return np.clip(out, 0, 255).astype(np.uint8)


def write_div2k(root: str, n: int, scales: tuple[int, ...], seed: int = 0) -> None:
    """n HR images and their box-downscaled LR images in the DIV2K layout (content is irrelevant)."""
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        hr = natural_ish(rng, HR_H, HR_W)
        os.makedirs(os.path.join(root, "DIV2K_train_HR"), exist_ok=True)
        Image.fromarray(hr).save(os.path.join(root, "DIV2K_train_HR", f"{i:04d}.png"), compress_level=1)
        for s in scales:
            lr = hr.reshape(HR_H // s, s, HR_W // s, s, 3).mean(axis=(1, 3)).round().astype(np.uint8)
            folder = os.path.join(root, "DIV2K_train_LR_bicubic", f"X{s}")
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(lr).save(os.path.join(folder, f"{i:04d}x{s}.png"), compress_level=1)


def make_config(root: str, n: int, scale: int, batch: int, patch: int) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        dict(
            seed=0, batch_size=batch, patch_size=patch, scales=(scale,),
            data=dict(
                source="div2k_folder", tfds_name="", data_dir=root, degradation="bicubic",
                train_range=(1, n), val_range=(801, 801), cache_dir=None, patches_per_image=16,
                skip_small="error", flat_patch_threshold=0.0, prefetch=4,
            ),
        )
    )


def time_iterator(it, warmup: int, steps: int, batch: int) -> float:
    """Pairs per second over ``steps`` batches after ``warmup`` batches."""
    for _ in range(warmup):
        next(it)
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="DIV2K-sized images to generate")
    parser.add_argument("--steps", type=int, default=200, help="batches per timing window")
    parser.add_argument("--warmup", type=int, default=50, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=3, help="timing windows per variant (best kept)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48, help="LR patch side")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2], help="sampler calls at once")
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        write_div2k(root, args.images, tuple(args.scales))
        print(f"wrote {args.images} pairs in {time.perf_counter() - t:.1f} s")
        rows = []
        for s in args.scales:
            cfg = make_config(root, args.images, s, args.batch, args.patch)
            t = time.perf_counter()
            pairs = data_sources.load_pairs(cfg.data, "train", (s,), args.patch)
            load_s = time.perf_counter() - t
            mb_per_pair = pairs.nbytes / len(pairs) / 1e6
            sampler = lambda step, s=s, pairs=pairs: input_pipeline.sample_batch(
                pairs, seed=0, step=step, batch=args.batch, patch=args.patch, scale=s, patches_per_image=16
            )
            iterators = {}
            for parallel in args.parallel:
                input_pipeline.NUM_PARALLEL_CALLS = parallel
                it = input_pipeline.create_train_iterator(cfg, process_index=0, process_count=1)
                for k in range(3):  # the parallel, prefetched pipeline yields the pure function's batches
                    lr, hr = sampler(k)
                    b = next(it)
                    if not (np.array_equal(b["lr"], lr) and np.array_equal(b["hr"], hr)):
                        raise RuntimeError(f"tf.data batch of step {k} differs from sample_batch")
                for _ in range(args.warmup):
                    next(it)
                iterators[parallel] = it
            # Alternate timing windows and keep each variant's best: the machine is shared.
            best = dict.fromkeys([*args.parallel, "numpy"], 0.0)
            for r in range(args.repeats):
                for key, it in iterators.items():
                    best[key] = max(best[key], time_iterator(it, 0, args.steps, args.batch))
                t = time.perf_counter()
                for k in range(args.steps):
                    sampler(r * args.steps + k)
                best["numpy"] = max(best["numpy"], args.steps * args.batch / (time.perf_counter() - t))
            tf_rates = " / ".join(f"{best[p]:,.0f}" for p in args.parallel)
            rows.append((s, tf_rates, best["numpy"], load_s / len(pairs), mb_per_pair))
        print(f"load average after: {os.getloadavg()}")
        calls = " / ".join(map(str, args.parallel))
        print(
            f"| scale | tf.data pairs/s ({calls} calls) | numpy sampler pairs/s | decode s/pair "
            "| cache MB/pair | cache for 800 images |"
        )
        print("|---|---|---|---|---|---|")
        for s, tf_rate, numpy_rate, load, mb in rows:
            print(f"| x{s} | {tf_rate} | {numpy_rate:,.0f} | {load:.2f} | {mb:.1f} | {mb * 0.8:.1f} GB |")


if __name__ == "__main__":
    main()
