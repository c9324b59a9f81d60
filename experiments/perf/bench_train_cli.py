"""Steps/s and data-wait share of the real ``edsr-jax train`` on a folder of generated PNGs.

Writes ``--images`` random-texture PNGs into a temporary folder, runs ``edsr-jax train --config
edsr_x2`` on it (``data.source="folder"``: LR made on the host by MATLAB bicubic, the whole input
pipeline as in training) for ``--steps`` steps in a fresh process, and reads the trainer's own log
lines (``step N/T ... X steps/s  data wait Y%``, one per ``--log-every`` steps). The first
interval holds the compile; the summary is the median over the later ones. Also reports the
seconds from process start to the first log line and the whole run's wall time.

``edsr-jax train`` needs ml_collections, grain, clu, tensorboard and Pillow; where one is missing
(e.g. a GPU image with only jax, flax, optax, orbax and torch) nothing is run, and the report
(and ``--out``) says which ("skipped"); the exit status is still 0.

Examples::

    python experiments/perf/bench_train_cli.py --out train_cli.json            # EDSR x2, 200 steps
    python experiments/perf/bench_train_cli.py --dtype bfloat16 --steps 400
    python experiments/perf/bench_train_cli.py --dry-run                       # tiny, any CPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Modules `edsr-jax train` imports beyond jax/flax/optax/orbax/numpy (configs, input pipeline,
# parameter table, TensorBoard events, image files).
NEEDED = ("ml_collections", "grain", "clu", "tensorboard", "PIL")
# The trainer's log line (edsr_jax.train): step, steps/s, data-wait percentage.
LOG_LINE = re.compile(r"^step (\d+)/\d+ .* ([\d.]+) steps/s  data wait (\d+)%")


def missing_modules(names: tuple[str, ...] | None = None) -> list[str]:
    """The modules of ``names`` (default :data:`NEEDED`) that cannot be imported here."""
    return [name for name in names or NEEDED if importlib.util.find_spec(name) is None]


def write_images(folder: str, count: int, hw: tuple[int, int], seed: int = 0) -> None:
    """``count`` RGB PNGs of smooth random texture (not flat, not pure noise), h x w."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = hw
    for i in range(count):
        coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        image = np.repeat(np.repeat(coarse, 8, 0), 8, 1)[:h, :w]
        noise = rng.integers(-12, 13, image.shape)
        pixels = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(folder, f"{i + 1:04d}.png"))


def command(args, images: str, workdir: str) -> list[str]:
    """The ``edsr-jax train`` command line of the run."""
    fields = {
        "data.source": "folder",
        "data.data_dir": images,
        "data.train_range": f"1,{args.images - 1}",
        "data.val_range": f"{args.images},{args.images}",
        "num_train_steps": args.steps,
        "log_every_steps": args.log_every,
        "checkpoint_every_steps": 0,
        "eval_every_steps": 0,
        "eval.num_images": 1,
        "dtype": args.dtype,
        **args.model_fields,
    }
    argv = [sys.executable, "-m", "edsr_jax.cli", "train", "--config", "edsr_x2", "--workdir", workdir]
    return argv + [f"--config.{k}={v}" for k, v in fields.items()]


def parse_log(lines: list[str]) -> list[dict]:
    """``[{"step", "steps_per_s", "data_wait"}]`` of the trainer's log lines."""
    rows = []
    for line in lines:
        if m := LOG_LINE.match(line):
            rows.append({"step": int(m[1]), "steps_per_s": float(m[2]), "data_wait": int(m[3]) / 100})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Medians over the intervals after the first (which holds the compile); all if only one."""
    later = rows[1:] or rows
    return {
        "steps_per_s": statistics.median(r["steps_per_s"] for r in later),
        "data_wait": statistics.median(r["data_wait"] for r in later),
        "intervals": len(later),
    }


def run(args) -> dict:
    """Generates the images, runs the trainer, returns the results (or why it was skipped)."""
    missing = missing_modules()
    if missing:
        return {"skipped": f"edsr-jax train needs {', '.join(missing)} (not importable here)"}
    with tempfile.TemporaryDirectory(prefix="bench_train_cli_") as root:
        images = os.path.join(root, "images")
        os.makedirs(images)
        write_images(images, args.images, args.image_hw)
        argv = command(args, images, os.path.join(root, "run"))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")])}
        t0 = time.perf_counter()
        first_log = None
        lines: list[str] = []
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if first_log is None and LOG_LINE.match(line):
                first_log = time.perf_counter() - t0
            if LOG_LINE.match(line) or line.startswith(("done:", "step ")):
                print(f"  {line}", flush=True)
        code = proc.wait()
        wall = time.perf_counter() - t0
    rows = parse_log(lines)
    if code != 0 or not rows:
        tail = "\n".join(lines[-15:])
        raise RuntimeError(f"edsr-jax train exited {code} with {len(rows)} log lines; last lines:\n{tail}")
    return {
        "command": " ".join(argv[1:]),
        "log": rows,
        **summarize(rows),
        "first_log_s": first_log,
        "wall_s": wall,
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200, help="training steps (%(default)s)")
    p.add_argument("--log-every", type=int, default=50, help="steps per log line (%(default)s)")
    p.add_argument("--images", type=int, default=16, help="PNGs generated; the last validates (%(default)s)")
    p.add_argument("--image-size", default="1020x678", help="WxH of the PNGs (%(default)s, DIV2K halved)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16", help="config.dtype")
    p.add_argument("--dry-run", action="store_true", help="tiny model and images, 6 steps (any CPU)")
    p.add_argument("--out", default="", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.image_size.lower().split("x"))
    args.image_hw, args.model_fields = (h, w), {}
    if args.dry_run:
        args.steps, args.log_every, args.images, args.image_hw = 6, 2, 3, (96, 128)
        args.model_fields = {"model.num_blocks": 1, "model.num_features": 8, "batch_size": 8}
        args.model_fields["patch_size"] = 12  # (batch 8: a multiple of 8 fake test devices)
    if args.images < 2:
        p.error(f"--images must be at least 2 (one validates), got {args.images}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"# edsr-jax train on {args.images} generated PNGs, {args.steps} steps, {args.dtype}", flush=True)
    result = {"args": vars(args), **run(args)}
    if "skipped" in result:
        print(f"train_cli: skipped: {result['skipped']}")
    else:
        print(
            f"train_cli: {result['steps_per_s']:.2f} steps/s, data wait {100 * result['data_wait']:.0f}% "
            f"(medians of {result['intervals']} log intervals after the first); first log line "
            f"{result['first_log_s']:.1f} s after start, whole run {result['wall_s']:.1f} s"
        )
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
        print(f"# wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
