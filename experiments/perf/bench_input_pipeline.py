"""Input pipeline throughput (pairs/s) on DIV2K-sized images, and the trainer's wait for data.

Writes ``--images`` DIV2K-sized PNG pairs (2040x1356 HR, smoothed noise, LR x2/x4) in the DIV2K
folder layout into a temporary folder. For each scale it builds the real training iterator
(``edsr_jax.data.pipeline.create_train_iterator``: the global sampler, images decoded once on
first use, Grain threads, prefetch), decodes every image once (one untimed pass), checks that the
pipeline yields exactly the batches of the pure ``(seed, step)`` function, then times windows of
``--steps`` batches, alternating the thread counts of ``--threads`` and the bare sampler on this
thread, and keeps each one's best window (the machine is shared).

``--train-steps N`` also runs ``edsr_jax.train.train_and_evaluate`` of the EDSR baseline x2 (batch
16, 48x48 LR patches) on those images for N steps and reports the share of the loop's time spent
waiting for the next batch (``train/data_wait`` in its TensorBoard events, logged every
``--log-every`` steps; the first window, which holds compilation and the first decodes, is left out).

    python experiments/perf/bench_input_pipeline.py                       # about two minutes on 2 cores
    python experiments/perf/bench_input_pipeline.py --scales 2 --train-steps 25
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import ml_collections
import numpy as np
from PIL import Image

from edsr_jax.data import cache, pipeline, sources

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


def make_config(
    root: str, n: int, scale: int, batch: int, patch: int, threads: int
) -> ml_collections.ConfigDict:
    from edsr_jax.configs import default

    config = default.get_config()
    config.scales, config.batch_size, config.patch_size = (scale,), batch, patch
    config.data.source, config.data.data_dir, config.data.train_range = "div2k_folder", root, (1, n)
    config.data.threads = threads
    return config


def time_iterator(it, steps: int, batch: int) -> float:
    """Pairs per second over ``steps`` batches."""
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    return steps * batch / (time.perf_counter() - t)


def throughput(root: str, args) -> list[tuple]:
    rows = []
    for s in args.scales:
        n_batches = -(-args.images // args.batch)  # batches that visit every image once
        iterators = {}
        for threads in args.threads:
            cfg = make_config(root, args.images, s, args.batch, args.patch, threads)
            it = pipeline.create_train_iterator(cfg)
            t = time.perf_counter()
            first = [next(it) for _ in range(n_batches)]  # decodes every image once
            decode = (time.perf_counter() - t) / args.images
            iterators[threads] = it
        pairs = cache.PairCache(sources.open_source(cfg.data, "train", (s,)))
        for step, batch in enumerate(first):  # the threaded pipeline yields the pure function's batches
            lr, hr = pipeline.sample_rows(
                pairs, seed=0, step=step, batch=args.batch, rows=(0, args.batch), patch=args.patch, scale=s
            )
            if not (np.array_equal(batch["low_res"], lr) and np.array_equal(batch["high_res"], hr)):
                raise RuntimeError(f"the pipeline's batch of step {step} differs from sample_rows")
        for i in range(args.images):
            pairs.pair(i, s)
        mb_per_pair = pairs.nbytes / args.images / 1e6
        best = dict.fromkeys([*args.threads, "sampler"], 0.0)
        for r in range(args.repeats):  # alternate the variants; keep each one's best window
            for threads, it in iterators.items():
                best[threads] = max(best[threads], time_iterator(it, args.steps, args.batch))
            t = time.perf_counter()
            for k in range(args.steps):
                pipeline.sample_rows(
                    pairs,
                    seed=0,
                    step=r * args.steps + k,
                    batch=args.batch,
                    rows=(0, args.batch),
                    patch=args.patch,
                    scale=s,
                )
            best["sampler"] = max(best["sampler"], args.steps * args.batch / (time.perf_counter() - t))
        rows.append(
            (s, " / ".join(f"{best[t]:,.0f}" for t in args.threads), best["sampler"], decode, mb_per_pair)
        )
    return rows


def trainer_wait(root: str, args) -> list[float]:
    """``train/data_wait`` of each logged window after the first, for the EDSR baseline x2."""
    from tensorboard.backend.event_processing import event_accumulator

    from edsr_jax import train

    cfg = make_config(root, args.images, 2, 16, 48, 0)
    cfg.num_train_steps, cfg.log_every_steps = args.train_steps, args.log_every
    cfg.checkpoint_every_steps, cfg.eval_every_steps, cfg.eval.num_images = 0, 0, 1
    cfg.data.val_range = (1, 1)  # (validation once at the end, on a training image: not what is timed)
    cfg.data.source = "div2k_folder"
    with tempfile.TemporaryDirectory() as workdir:
        train.train_and_evaluate(cfg, workdir)
        events = event_accumulator.EventAccumulator(workdir)
        events.Reload()
        return [e.value for e in events.Scalars("train/data_wait")][1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="DIV2K-sized images to generate")
    parser.add_argument("--steps", type=int, default=100, help="batches per timing window")
    parser.add_argument("--repeats", type=int, default=3, help="timing windows per variant (best kept)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=48, help="LR patch side")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="Grain thread counts to time")
    parser.add_argument("--train-steps", type=int, default=0, help="also time the trainer's wait for data")
    parser.add_argument(
        "--log-every", type=int, default=5, help="steps per data-wait window of --train-steps"
    )
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as root:
        t = time.perf_counter()
        write_div2k(root, args.images, tuple(sorted({*args.scales, 2})))
        print(f"wrote {args.images} pairs in {time.perf_counter() - t:.1f} s")
        rows = throughput(root, args)
        print(f"load average after: {os.getloadavg()}")
        threads = " / ".join(map(str, args.threads))
        print(
            f"| scale | pipeline pairs/s ({threads} threads) | sampler alone pairs/s | decode s/pair "
            "| cache MB/pair | cache for 800 images |"
        )
        print("|---|---|---|---|---|---|")
        for s, rates, sampler_rate, decode, mb in rows:
            print(f"| x{s} | {rates} | {sampler_rate:,.0f} | {decode:.2f} | {mb:.1f} | {mb * 0.8:.1f} GB |")
        if args.train_steps:
            waits = trainer_wait(root, args)
            shown = ", ".join(f"{100 * w:.1f} %" for w in waits)
            print(
                f"trainer data wait (EDSR baseline x2, batch 16, 48x48), {args.log_every}-step windows: "
                + shown
            )


if __name__ == "__main__":
    main()
