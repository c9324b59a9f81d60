"""Peak host memory (RSS) of ``edsr-jax upscale`` on large photographs at x4.

Generates smooth RGB photographs of the given sizes (PNG), saves a randomly initialised EDSR x4
(``--model baseline``: the EDSR baseline B16 F64, the default; ``edsr``: the full EDSR B32 F256;
``tiny``: B1 F8, which checks the output's own memory in seconds), and runs ``edsr-jax upscale``
on each in a fresh process, reading the child's peak RSS from ``getrusage`` (random weights: the
memory of a model does not depend on its values); the child sees one CPU device (``--devices N``:
N fake ones, each with a tile in flight, as on a host with N accelerators, whose device buffers
would not count in RSS). The target is 1.5 x the uint8 output + 500 MB. With
``--repo DIR`` the command runs the edsr-jax found in ``DIR`` (e.g. a worktree of an older commit)
instead of the installed one, for a before/after comparison.

    python experiments/perf/bench_upscale_memory.py --sizes 4000x3000                # baseline x4
    python experiments/perf/bench_upscale_memory.py --model edsr --sizes 1000x750    # full EDSR x4
    git worktree add /tmp/old a52d4a2 && python experiments/perf/bench_upscale_memory.py --repo /tmp/old
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from edsr_jax import models

SIZES = ((1000, 750), (2000, 1500), (4000, 3000))
# The EDSR x4 each --model names.
ARCHS = {
    "baseline": lambda: models.edsr_baseline(4),
    "edsr": lambda: models.edsr(4),
    "tiny": lambda: models.EDSR(scale=4, num_blocks=1, num_features=8),
}
# The target: peak RSS at most this many times the uint8 output, plus TARGET_MB.
TARGET_FACTOR, TARGET_MB = 1.5, 500


def photo(w: int, h: int, seed: int = 0) -> np.ndarray:
    """Smooth noise at a few scales: compresses and upscales like a photograph, not like noise."""
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, 3), np.float32)
    for cell in (128, 32, 8):
        coarse = rng.normal(size=(h // cell + 2, w // cell + 2, 3)).astype(np.float32)
        out += np.repeat(np.repeat(coarse, cell, 0), cell, 1)[:h, :w] * cell**0.5
    return np.clip((out - out.mean()) / out.std() * 45 + 120, 0, 255).astype(np.uint8)


def peak_rss_mb(command: list[str], env: dict) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of ``command`` run in a child process (which must succeed)."""
    code = (
        "import resource, subprocess, sys, time; t = time.time(); "
        "r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.time() - t, r.returncode)"
    )
    out = subprocess.run([sys.executable, "-c", code, *command], env=env, capture_output=True, text=True)
    rss_kb, seconds, rc = out.stdout.split()[-3:]
    if int(rc) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    return int(rss_kb) / 1024, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(ARCHS), default="baseline")
    parser.add_argument("--repo", default="", help="run the edsr-jax of this checkout instead")
    parser.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES), help="WxH,WxH,...")
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="CPU devices the child sees (a CPU host has one; N fake devices keep N tiles in flight)",
    )
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    import jax

    from edsr_jax.checkpoint import exported

    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    flags.append(f"--xla_force_host_platform_device_count={args.devices}")
    env = {**os.environ, "XLA_FLAGS": " ".join(flags)}
    runner = ["-c", "import sys; from edsr_jax import cli; sys.exit(cli.main(sys.argv[1:]))"]
    if args.repo:  # (an editable install's import hook would win over PYTHONPATH: drop it first)
        repo = os.path.abspath(args.repo)
        runner = [
            "-c",
            "import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(f)]; "
            f"sys.path.insert(0, {repo!r}); import edsr_jax; assert edsr_jax.__file__.startswith({repo!r}); "
            "from edsr_jax import cli; sys.exit(cli.main(sys.argv[1:]))",
        ]
    model = ARCHS[args.model]()
    print(
        f"code: {args.repo or 'this checkout'}; model: EDSR x4 {args.model} (B{model.num_blocks} "
        f"F{model.num_features}); load {os.getloadavg()[0]:.1f}"
    )
    print("| input | output | uint8 output MB | peak RSS MB | RSS / output | target MB | seconds |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        exported.save_model(os.path.join(tmp, "model"), model, models.init(model, jax.random.key(0)))
        for w, h in sizes:
            src, dst = os.path.join(tmp, f"in_{w}x{h}.png"), os.path.join(tmp, f"out_{w}x{h}.png")
            Image.fromarray(photo(w, h)).save(src, compress_level=1)
            command = [
                sys.executable,
                *runner,
                "upscale",
                "--checkpoint",
                os.path.join(tmp, "model"),
                src,
                dst,
            ]
            t = time.time()
            rss, seconds = peak_rss_mb(command, env)
            output_mb = w * 4 * h * 4 * 3 / 2**20
            Image.MAX_IMAGE_PIXELS = None  # (our own output, to check its size)
            with Image.open(dst) as im:
                assert im.size == (w * 4, h * 4), im.size
            os.unlink(dst)
            target = TARGET_FACTOR * output_mb + TARGET_MB
            print(
                f"| {w}x{h} | {w * 4}x{h * 4} | {output_mb:,.0f} | {rss:,.0f} | {rss / output_mb:.2f} | "
                f"{target:,.0f} ({'met' if rss <= target else 'NOT met'}) | "
                f"{seconds:.0f} ({time.time() - t:.0f} with start-up) |",
                flush=True,
            )


if __name__ == "__main__":
    main()
