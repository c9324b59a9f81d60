"""Speed of ``edsr-jax eval`` against the PyTorch reference's test loop, and eval on 1 vs N devices.

``speed`` (default): the EDSR baseline at x2 and x4 with the same random weights in both engines
(PyTorch: the repository's independent reference, ``tests/support/torch_reference``, official key
names; edsr-jax: the converted state dict). Two workloads per scale:

* ``Set5``: the five Set5 images (HR and MATLAB LR from ``--data-dir``), per image;
* ``2K``: one DIV2K-sized image (2040x1356 HR, LR 1020x678 at x2, 510x339 at x4), generated.

edsr-jax runs what ``edsr-jax eval`` runs: :func:`edsr_jax.evaluate.evaluate_images` with
``make_upscaler`` (padding to a multiple of 16, the masked forward, quantisation, PSNR *and* SSIM
on Y). PyTorch runs the official test loop's work: ``model(lr)`` under ``no_grad`` on the whole
image, quantise, PSNR on Y with ``shave = scale`` (the official loop computes no SSIM, so the
edsr-jax side does more). Both engines alternate within a round; the script prints seconds per
image (median over rounds) and the paired ratio edsr-jax / PyTorch (median over rounds of the
ratio within a round; < 1: edsr-jax faster). The PSNRs of both are printed: they agree to about
1e-4 dB (float32 summation order).

``devices``: Set5 x2 evaluated with ``make_upscaler(devices=jax.local_devices())`` in a fresh
process per device count (``XLA_FLAGS=--xla_force_host_platform_device_count=N``), counts
alternating over rounds; prints seconds (median) and checks, in each process, that all its
devices give exactly the one-device per-image PSNR and SSIM. On a CPU the fake devices share the
same cores, so this shows the plumbing, not a speed-up.

Examples::

    python experiments/perf/bench_eval.py --rounds 5
    python experiments/perf/bench_eval.py devices --counts 1,4 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DATA = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "benchmarks")
BASELINE = (16, 64, 1.0)  # num_blocks, num_features, res_scale
TWO_K_HR = (1356, 2040)  # DIV2K's most common size (H, W)
Y_WEIGHTS = (65.738 / 256, 129.057 / 256, 25.064 / 256)  # the official test loop's Y (no offset)


def _models(scale: int, seed: int = 0):
    import jax
    import jax.numpy as jnp

    sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
    from support import torch_reference

    from edsr_jax.interop import torch as convert

    net = torch_reference.randomize_(torch_reference.build_model("edsr", scale, *BASELINE), seed)
    net.eval()
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    model, variables = convert.convert_state_dict(state)
    return model, jax.tree.map(jnp.asarray, variables), net


def _two_k_sample(scale: int):
    """A smooth generated 2K image (the content does not change the speed) and its MATLAB LR."""
    import numpy as np

    from edsr_jax.data.benchmarks import Sample
    from edsr_jax.imaging import resize

    rng = np.random.default_rng(0)
    h, w = TWO_K_HR
    small = rng.uniform(0, 255, (h // 8 + 1, w // 8 + 1, 3))
    hr = np.clip(np.kron(small, np.ones((8, 8, 1)))[:h, :w] + rng.normal(0, 8, (h, w, 3)), 0, 255)
    hr = hr.round().astype(np.uint8)
    hr = hr[: h - h % scale, : w - w % scale]
    return Sample(name="2K", lr=resize.imresize(hr, 1 / scale, boundary="replicate"), hr=hr)


def torch_test_loop(net, samples, scale: int) -> list[float]:
    """The official test loop's work per image: forward, quantise, PSNR on Y (shave = scale)."""
    import torch

    weights = torch.tensor(Y_WEIGHTS).view(1, 3, 1, 1)
    out = []
    with torch.no_grad():
        for s in samples:
            lr = torch.from_numpy(s.lr).permute(2, 0, 1)[None].float()
            hr = torch.from_numpy(s.hr).permute(2, 0, 1)[None].float()
            sr = net(lr).clamp(0, 255).round()
            diff = ((sr - hr[..., : sr.shape[2], : sr.shape[3]]) / 255 * weights).sum(dim=1)
            valid = diff[..., scale:-scale, scale:-scale]
            out.append(float(-10 * torch.log10(valid.pow(2).mean())))
    return out


def _engines(upscaler, net, samples, scale: int) -> dict:
    """``{engine: run}``, each run scoring every sample and returning the PSNRs."""
    from edsr_jax import evaluate

    return {
        "edsr-jax": lambda: [
            i["psnr"] for i in evaluate.evaluate_images(upscaler, samples, scale=scale)["images"]
        ],
        "pytorch": lambda: torch_test_loop(net, samples, scale),
    }


def speed(args) -> dict:
    import torch

    from edsr_jax import inference
    from edsr_jax.data import benchmarks

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    report = {"rounds": args.rounds, "threads": torch.get_num_threads(), "rows": []}
    for scale in args.scales:
        model, variables, net = _models(scale)
        upscaler = inference.make_upscaler(model, variables, scale)
        workloads = {
            "Set5": benchmarks.load_benchmark(args.data_dir, "Set5", scale),
            "2K": [_two_k_sample(scale)],
        }
        for name, samples in workloads.items():
            run = _engines(upscaler, net, samples, scale)
            psnr = {engine: fn() for engine, fn in run.items()}  # warm-up: compiles, first touches
            times = {engine: [] for engine in run}
            for r in range(args.rounds):
                for engine in list(run) if r % 2 == 0 else list(run)[::-1]:
                    start = time.perf_counter()
                    run[engine]()
                    times[engine].append((time.perf_counter() - start) / len(samples))
            ratio = statistics.median(a / b for a, b in zip(times["edsr-jax"], times["pytorch"], strict=True))
            row = {
                "scale": scale,
                "workload": name,
                "images": len(samples),
                "lr_pixels": sum(s.lr.shape[0] * s.lr.shape[1] for s in samples),
                "edsr_jax_s_per_image": statistics.median(times["edsr-jax"]),
                "pytorch_s_per_image": statistics.median(times["pytorch"]),
                "paired_ratio": ratio,
                "max_psnr_difference_db": max(
                    abs(a - b) for a, b in zip(psnr["edsr-jax"], psnr["pytorch"], strict=True)
                ),
                "times": times,
            }
            report["rows"].append(row)
            print(
                f"x{scale} {name:5s} ({len(samples)} images): edsr-jax {row['edsr_jax_s_per_image']:.3f} "
                f"s/image, PyTorch {row['pytorch_s_per_image']:.3f} s/image, paired ratio {ratio:.3f}; "
                f"PSNR agree within {row['max_psnr_difference_db']:.1e} dB",
                flush=True,
            )
    return report


_CHILD = r"""
import json, statistics, sys, time
import jax
sys.path.insert(0, {tests!r})
from support import torch_reference
from edsr_jax import evaluate, inference
from edsr_jax.data import benchmarks
from edsr_jax.interop import torch as convert
net = torch_reference.randomize_(torch_reference.build_model("edsr", 2, *{baseline!r}), 0)
model, variables = convert.convert_state_dict({{k: v.detach().numpy() for k, v in net.state_dict().items()}})
up = inference.make_upscaler(model, variables, 2, devices=jax.local_devices())
samples = benchmarks.load_benchmark({data!r}, "Set5", 2)
evaluate.evaluate_images(up, samples, scale=2)
times = []
for _ in range({passes}):
    start = time.perf_counter()
    res = evaluate.evaluate_images(up, samples, scale=2)
    times.append(time.perf_counter() - start)
one = evaluate.evaluate_images(inference.make_upscaler(model, variables, 2), samples, scale=2)
same = one["images"] == res["images"]
print("RESULT " + json.dumps({{"devices": jax.local_device_count(), "seconds": statistics.median(times),
                               "images": res["images"], "same_as_one_device": same}}))
"""


def devices(args) -> dict:
    code = _CHILD.format(
        tests=os.path.join(REPO_ROOT, "tests"), baseline=BASELINE, data=args.data_dir, passes=args.passes
    )
    seconds = {n: [] for n in args.counts}
    images, same = {}, {}
    for r in range(args.rounds):
        for n in args.counts if r % 2 == 0 else args.counts[::-1]:
            env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
            done = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
            )
            line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode or not line:
                raise SystemExit(f"{n} devices failed:\n{done.stderr[-3000:]}")
            result = json.loads(line[-1][len("RESULT ") :])
            assert result["devices"] == n, result["devices"]
            seconds[n].append(result["seconds"])
            images.setdefault(n, result["images"])
            same[n] = same.get(n, True) and result["same_as_one_device"]
    first = images[args.counts[0]]
    identical = all(same[n] for n in args.counts)
    across = max(
        abs(a["psnr"] - b["psnr"]) for n in args.counts for a, b in zip(images[n], first, strict=True)
    )
    for n in args.counts:
        print(f"{n} device(s): Set5 x2 in {statistics.median(seconds[n]):.2f} s (median of {args.rounds})")
    print(f"within each process, all devices give exactly the one-device PSNR and SSIM: {identical}")
    # (A process started with N fake CPU devices compiles for a different thread split, so its
    # float32 sums may round differently from another process's: not the devices' doing.)
    print(f"largest per-image PSNR difference between the processes: {across:.1e} dB")
    mean = statistics.mean(i["psnr"] for i in first)
    return {
        "seconds": seconds,
        "identical_within_process": identical,
        "max_psnr_difference_across_processes_db": across,
        "set5_x2_psnr": mean if math.isfinite(mean) else None,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="speed", choices=("speed", "devices"))
    parser.add_argument("--data-dir", default=DEFAULT_DATA, help="folder holding Set5/HR and Set5/LR_bicubic")
    parser.add_argument("--scales", default="2,4", type=lambda v: [int(s) for s in v.split(",")])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--counts", default="1,4", type=lambda v: [int(s) for s in v.split(",")])
    parser.add_argument("--passes", type=int, default=3, help="timed passes per process (devices)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if not os.path.isdir(os.path.join(args.data_dir, "Set5")):
        parser.error(f"no Set5 in {args.data_dir} (set --data-dir)")

    report = speed(args) if args.mode == "speed" else devices(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
