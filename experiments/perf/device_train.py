"""The train part of ``device_check.py``: the real ``edsr-jax train`` on generated PNGs.

Run by ``device_check.py`` in a process of its own::

    python experiments/perf/device_train.py PLAN.json ROWS.jsonl

Writes ``plan["train"]["images"]`` PNGs of smooth random texture (DIV2K halved: 1020x678) into a
temporary folder and trains on them with ``edsr-jax train`` (``data.source="folder"``: LR made on
the host by MATLAB bicubic, the whole input pipeline as in training) in a fresh process per run,
one run after the other while the part's time lasts (``plan["train"]["runs"]``: the full EDSR x2,
then the baseline). From the trainer's own log lines (``step N/T ... X steps/s  data wait Y%``)
it reports the medians of the intervals after the first (which holds the compile), the seconds
to the first log line, and the seconds from the last step line to the validation line (the
run's one validation, at its end: decoding, compiling, scoring).

``edsr-jax train`` needs ml_collections and grain, which the GPU hosts lack: when one is
missing, the wheels of ``plan["wheels"]`` (``device_check.py --fetch-wheels`` downloads
:data:`WHEELS` there) are installed into a temporary folder on the trainer's ``PYTHONPATH``
only; without them each run's row says "skipped" and names what is missing.
"""

from __future__ import annotations

import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Modules `edsr-jax train` needs that the GPU hosts lack, and the wheels that bring them (with
# their dependencies missing there): device_check.py --fetch-wheels downloads these into .whl/.
TRAIN_MODULES = ("ml_collections", "grain")
WHEELS = ("ml-collections==1.1.0", "grain==0.2.18", "array-record==0.8.6", "portpicker==1.6.0")
WHEEL_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)
WHEELS_DIR = os.path.join(REPO_ROOT, ".whl")
# The trainer's log line (edsr_jax.train): step, steps/s, data-wait percentage; its validation line.
LOG_LINE = re.compile(r"^step (\d+)/\d+ .* ([\d.]+) steps/s  data wait (\d+)%")
VAL_LINE = re.compile(r"^step \d+  val/psnr")


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
        Image.fromarray(pixels).save(os.path.join(folder, f"{i + 1:04d}.png"), compress_level=1)


def train_command(run: dict, train_plan: dict, images: str, workdir: str) -> list[str]:
    """The ``edsr-jax train`` command line of one run."""
    n = train_plan["images"]
    fields = {
        "data.source": "folder",
        "data.data_dir": images,
        "data.train_range": f"1,{n - 1}",
        "data.val_range": f"{n},{n}",
        "num_train_steps": run["steps"],
        "log_every_steps": run["log_every"],
        "checkpoint_every_steps": 0,  # (at the end only)
        "eval_every_steps": 0,  # (one validation, at the end)
        "eval.num_images": 1,
        "steps_per_call": train_plan["steps_per_call"],
        "compilation_cache_dir": "",  # a cold start, and nothing written outside the workdir
        **train_plan["fields"],
    }
    argv = [sys.executable, "-m", "edsr_jax.cli", "train", "--config", run["config"], "--workdir", workdir]
    return argv + [f"--config.{k}={v}" for k, v in fields.items()]


def parse_log(lines: list[tuple[str, float]]) -> dict:
    """Steps/s and data-wait share (medians of the log intervals after the first, which holds the
    compile), the first log line's time, and the validation's seconds (from the last step line to
    the validation line) of a trainer's ``(line, seconds)``."""
    intervals = [
        {"step": int(m[1]), "steps_per_s": float(m[2]), "data_wait": int(m[3]) / 100, "at_s": t}
        for line, t in lines
        if (m := LOG_LINE.match(line))
    ]
    if not intervals:
        return {"intervals": []}
    later = intervals[1:] or intervals
    out = {
        "intervals": intervals,
        "steps_per_s": statistics.median(r["steps_per_s"] for r in later),
        "data_wait": statistics.median(r["data_wait"] for r in later),
        "first_log_s": intervals[0]["at_s"],
    }
    val = [t for line, t in lines if VAL_LINE.match(line)]
    if val:
        out["validation_s"] = val[0] - intervals[-1]["at_s"]
    return out


def missing_modules(env: dict) -> list[str]:
    """The :data:`TRAIN_MODULES` a process with ``env`` cannot import."""
    code = (
        "import importlib.util as u, sys; print(' '.join(n for n in sys.argv[1:] if u.find_spec(n) is None))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *TRAIN_MODULES], env=env, capture_output=True, text=True, timeout=60
    )
    return out.stdout.split()


def install_wheels(wheels: str, target: str) -> str:
    """Installs the wheels of folder ``wheels`` into ``target`` (no index, no dependencies); a note."""
    files = sorted(glob.glob(os.path.join(wheels, "*.whl")))
    if not files:
        return f"no wheels in {wheels}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--target",
        target,
        *files,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode:
        return f"pip could not install the wheels of {wheels}: {' '.join(done.stderr.split())[:300]}"
    return f"installed {len(files)} wheels from {wheels} for the trainer"


def stream(argv: list[str], limit_s: float, env: dict) -> tuple[int | None, list[tuple[str, float]]]:
    """Runs ``argv``, printing its output as it comes; kills it at ``limit_s``. Returns ``(exit
    status or None when killed, [(line, seconds since start)])``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        errors="replace",
    )
    killer = threading.Timer(max(limit_s, 0.1), proc.kill)
    killer.start()
    lines = []
    for line in proc.stdout:
        lines.append((line.rstrip(), time.perf_counter() - t0))
        print(line.rstrip(), flush=True)
    code = proc.wait()
    killed = not killer.is_alive()
    killer.cancel()
    return (None if killed and code != 0 else code), lines


def child_env(extra_path: str = "") -> dict:
    """The trainer's environment: the repository (and ``extra_path``) importable."""
    paths = [REPO_ROOT, extra_path, os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "PYTHONUNBUFFERED": "1"}


def emit(path: str, row: dict) -> None:
    """Appends ``row`` to the JSONL file and prints it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(f"row {json.dumps(row)[:400]}", flush=True)


def trainer_env(wheels: str, work: str) -> tuple[dict, list[str], str]:
    """The trainer's environment, the modules still missing in it, and a note on the wheels."""
    env, note = child_env(), ""
    missing = missing_modules(env)
    if missing:
        site = os.path.join(work, "site")
        note = install_wheels(wheels, site)
        env = child_env(site)
        missing = missing_modules(env)
    return env, missing, note


def run(plan: dict, rows_path: str) -> None:
    """Each run of ``plan["train"]`` in order; a run that would start within ``plan["reserve_s"]``
    of the deadline gets a "skipped" row."""
    train = plan["train"]
    with tempfile.TemporaryDirectory(prefix="device_train_") as work:
        env, missing, note = trainer_env(plan["wheels"], work)
        if missing:
            why = (
                f"edsr-jax train needs {', '.join(missing)} (not importable here; {note}; "
                "python experiments/perf/device_check.py --fetch-wheels brings them)"
            )
            for r in train["runs"]:
                emit(rows_path, {"item": r["item"], "kind": "train", "skipped": why})
            return
        images = os.path.join(work, "images")
        os.makedirs(images)
        write_images(images, train["images"], tuple(train["image_hw"]))
        for r in train["runs"]:
            left = plan["deadline"] - time.time()
            if left < plan["reserve_s"]:
                emit(rows_path, {"item": r["item"], "kind": "train", "skipped": "the part's time was spent"})
                continue
            t0 = time.perf_counter()
            code, lines = stream(train_command(r, train, images, os.path.join(work, r["config"])), left, env)
            row = {"item": r["item"], "kind": "train", "config": r["config"], "steps": r["steps"]}
            row.update(
                steps_per_call=train["steps_per_call"], wall_s=time.perf_counter() - t0, **parse_log(lines)
            )
            if note:
                row["note"] = note
            if code != 0:
                row["error"] = "stopped at the part's limit" if code is None else f"exited {code}"
                row["last_lines"] = [line for line, _ in lines[-8:]]
            emit(rows_path, row)


def fetch_wheels(folder: str) -> int:
    """Downloads :data:`WHEELS` for Python 3.12 on x86-64 Linux into ``folder`` (needs network)."""
    platforms = [f"--platform={p}" for p in WHEEL_PLATFORMS]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        *platforms,
        "-d",
        folder,
        *WHEELS,
    ]
    return subprocess.run(cmd).returncode


def main(argv=None) -> int:
    plan_path, rows_path = (sys.argv[1:] if argv is None else argv)[:2]
    with open(plan_path, encoding="utf-8") as f:
        run(json.load(f), rows_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
