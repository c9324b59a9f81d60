"""Start-up time of ``edsr-jax train`` (and ``edsr-jax demo``) with an empty vs a warm compilation cache.

Each try runs, for every config, a cold run (a fresh, empty ``EDSR_JAX_COMPILATION_CACHE`` folder)
and then a warm run (a new process on the same folder); each run has its own new workdir, so
nothing is resumed. The time is from just before the process starts to the moment its first
training step is done (the trainer's ``step 1/T`` line; the demo's progress bar reaching 1).
Tries alternate cold and warm runs, so a drift in the machine's load hits both; the table gives
the median, min and max over tries, the cache's entries after the cold run, and the whole run's
wall time (``train`` also validates and checkpoints at its last step).

Examples::

    python experiments/perf/bench_restart.py                       # demo and test configs, 3 tries
    python experiments/perf/bench_restart.py --configs test --tries 5 --json restart.json
    python experiments/perf/bench_restart.py --demo                # also `edsr-jax demo --steps 2`
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# The training runs: two steps, a log line after each (step 1 marks the end of start-up).
TRAIN_OVERRIDES = ("--config.num_train_steps=2", "--config.log_every_steps=1")
# The trainer's first log line, and the demo's progress bar at its first training step.
FIRST_STEP = {"train": re.compile(r"^step 1/\d+"), "demo": re.compile(r"training:.*\b1/2\b")}
# JAX's cache folder holds one file per compiled program with this suffix.
CACHE_SUFFIX = "-cache"


def command(kind: str, config: str, workdir: str) -> list[str]:
    """The command line of one run (``kind`` "train" with ``config``, or "demo")."""
    cli = [sys.executable, "-m", "edsr_jax.cli"]
    if kind == "demo":
        return [*cli, "demo", "--steps", "2", "--workdir", workdir]
    return [*cli, "train", "--config", config, "--workdir", workdir, *TRAIN_OVERRIDES]


def cache_entries(folder: str) -> tuple[int, int]:
    """(files, bytes) of the compiled programs in a JAX cache folder."""
    sizes = [os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(CACHE_SUFFIX)]
    return len(sizes), sum(sizes)


def timed_run(argv: list[str], cache: str, pattern: re.Pattern, kill_after_first: bool, timeout: float):
    """Runs ``argv`` with ``cache`` as edsr-jax's cache; returns (seconds to the first step, total).

    Both streams are read as they come, split at newlines and carriage returns (progress bars).
    With ``kill_after_first`` the process is killed once its first step is seen (total is None).
    """
    env = {**os.environ, "EDSR_JAX_COMPILATION_CACHE": cache, "PYTHONUNBUFFERED": "1"}
    first = threading.Event()
    seen: dict[str, float] = {}
    tail: list[str] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def reader(stream):
        buffer = ""
        for chunk in iter(lambda: stream.read1(4096), b""):
            buffer += chunk.decode(errors="replace")
            *lines, buffer = re.split(r"[\r\n]", buffer)
            for line in lines:
                tail[:] = (tail + [line])[-20:]
                if not first.is_set() and pattern.search(line):
                    seen["first"] = time.perf_counter() - t0
                    first.set()

    threads = [threading.Thread(target=reader, args=(s,), daemon=True) for s in (proc.stdout, proc.stderr)]
    for thread in threads:
        thread.start()
    if kill_after_first:
        first.wait(timeout)
        proc.kill()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{' '.join(argv)} ran past --timeout {timeout} s; last lines: {tail}") from None
    total = time.perf_counter() - t0
    for thread in threads:
        thread.join()
    if "first" not in seen or (code != 0 and not kill_after_first):
        raise RuntimeError(f"{' '.join(argv)} exited {code} without a first step; last lines: {tail}")
    return seen["first"], None if kill_after_first else total


def measure(kinds: list[tuple[str, str]], tries: int, timeout: float, root: str) -> list[dict]:
    """Cold then warm runs of every ``(kind, config)``, ``tries`` times; one row per pair."""
    rows = {key: {"kind": key[0], "config": key[1], "cold": [], "warm": [], "totals": {}} for key in kinds}
    for attempt in range(tries):
        for key in kinds:
            kind, config = key
            cache = os.path.join(root, f"cache-{kind}-{config}-{attempt}")
            for phase in ("cold", "warm"):
                workdir = os.path.join(root, f"run-{kind}-{config}-{attempt}-{phase}")
                first, total = timed_run(
                    command(kind, config, workdir), cache, FIRST_STEP[kind], kind == "demo", timeout
                )
                rows[key][phase].append(first)
                rows[key]["totals"].setdefault(phase, []).append(total)
                if phase == "cold":
                    rows[key]["entries"] = cache_entries(cache)
                print(f"# try {attempt + 1} {kind} {config} {phase}: first step {first:.2f} s", flush=True)
                shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
    return list(rows.values())


def format_table(rows: list[dict]) -> str:
    """The results as a text table (seconds from process start to the first step done)."""
    out = [
        f"{'run':16s} {'cold median':>11s} {'(min-max)':>13s} {'warm median':>11s} {'(min-max)':>13s} "
        f"{'saved':>6s} {'entries':>13s} {'total cold/warm':>16s}"
    ]
    for r in rows:
        cold, warm = r["cold"], r["warm"]
        files, size = r.get("entries", (0, 0))
        totals = r["totals"]
        total = (
            f"{statistics.median(totals['cold']):.1f}/{statistics.median(totals['warm']):.1f} s"
            if None not in totals["cold"] + totals["warm"]
            else "(killed)"
        )
        out.append(
            f"{r['kind'] + ' ' + r['config']:16s} {statistics.median(cold):10.2f}s "
            f"({min(cold):5.2f}-{max(cold):5.2f}) {statistics.median(warm):10.2f}s "
            f"({min(warm):5.2f}-{max(warm):5.2f}) {statistics.median(cold) - statistics.median(warm):5.2f}s "
            f"{files:4d} ({size / 1e6:5.1f} MB) {total:>16s}"
        )
    return "\n".join(out)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="demo,test", help="comma-separated train configs (%(default)s)")
    p.add_argument("--tries", type=int, default=3, help="cold/warm pairs per config (%(default)s)")
    p.add_argument("--demo", action="store_true", help="also time `edsr-jax demo --steps 2`")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one run may take (%(default)s)")
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.tries < 1:
        p.error(f"--tries must be at least 1, got {args.tries}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    kinds = [("train", c) for c in args.configs.split(",") if c] + ([("demo", "demo")] if args.demo else [])
    load = {"before": os.getloadavg()[0]}
    print(f"# {os.cpu_count()} cores; load average (1 min) before: {load['before']:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench_restart_") as root:
        rows = measure(kinds, args.tries, args.timeout, root)
    load["after"] = os.getloadavg()[0]
    print(f"# load average (1 min) after: {load['after']:.2f}")
    print("# seconds from process start to the first training step done; saved = cold - warm medians")
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "load_1min": load, "results": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
