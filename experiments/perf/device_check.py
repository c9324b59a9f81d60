"""One GPU check of edsr-jax: every figure in one command that ends within 540 s and writes 5 files.

    python experiments/perf/device_check.py            # one H100/H200: <= 540 s, files in $OUT
    python experiments/perf/device_check.py --dry-run  # tiny sizes on any CPU (a test runs it)

Three parts, each in processes of its own (JAX and PyTorch never share one), each with a time
limit; the limits sum to less than the budget, and a part that would start with too little time
left is skipped with a row saying so:

1. ``jax`` (``device_jax.py``): versions; ceilings (a bf16 GEMM, a device copy); the real
   training program (``compile_train_steps``) of EDSR baseline x2 and full EDSR x2 in bf16 and
   tf32, MDSR baseline x2-x4 and the full MDSR in bf16: compile seconds, ms/step at 1 and K steps
   per call without a host sync per step, TFLOP/s of the convolutions (``conv_flops.py``: forward
   + 2x for the gradients) and % of the measured bf16 GEMM rate; the EDSR baseline's program
   under GPU compiler options (:data:`COMPILER_VARIANTS`); one validation (``evaluate.Validation``
   on 10 DIV2K-sized images).
2. ``torch`` (``device_torch.py``): PyTorch on the same models with AMP bf16, channels-last and
   the fused Adam, eager and ``torch.compile``, and the baseline's whole step as a CUDA graph.
3. ``train``: the real ``edsr-jax train`` (full EDSR x2, then the baseline) on generated PNGs (a
   ``folder`` source): steps/s and the data-wait share from its log, the first validation.

Last it prints a compact table and the targets (met or unmet), and writes ``device_check.json``
(every row, the plan, the targets), ``device_check.txt`` (the table) and ``logs/{jax,torch,train}.log``
into ``--out`` (default ``$OUT``, else ``./device_check_out``).

``edsr-jax train`` needs ml_collections and grain, which the GPU hosts lack: ``--fetch-wheels``
(on a machine with network) downloads them and their missing dependencies (:data:`WHEELS`,
about 5 MB, Python 3.12 x86-64) into ``.whl/`` (git-ignored); carry that folder to the GPU host
and the check installs them into a temporary folder for the trainer's process only. Without
them the train part reports "skipped" and names what is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import conv_flops  # noqa: E402
import device_train  # noqa: E402

# The budget of the whole command and its parts (seconds): part limits sum to 500, leaving 40 s
# for starting, the PNGs and the table. Dry run: tiny sizes on a shared 2-core CPU.
BUDGET_S, DRY_BUDGET_S = 540, 240
PART_LIMITS_S = {"jax": 230, "torch": 140, "train": 130}
DRY_PART_LIMITS_S = {"jax": 90, "torch": 60, "train": 80}
# Seconds kept back at the end for the table; a part with less than MIN_PART_S left is skipped.
FINISH_RESERVE_S = 5
MIN_PART_S, DRY_MIN_PART_S = 20, 2
# A worker starts no new item within this many seconds of its part's limit.
ITEM_RESERVE_S, DRY_ITEM_RESERVE_S = 12, 1
# XLA:CPU without LLVM's optimisations in the dry run: programs compile in half the time (and
# run slower), which is what a check of the code paths wants.
DRY_XLA_FLAGS = "--xla_backend_optimization_level=0"

# The models (edsr_jax/configs: edsr_baseline_x2, edsr_x2, mdsr_baseline, mdsr) and their dry-run sizes.
MODELS = {
    "edsr_baseline_x2": {
        "arch": "edsr",
        "num_blocks": 16,
        "num_features": 64,
        "res_scale": 1.0,
        "scales": [2],
    },
    "edsr_x2": {"arch": "edsr", "num_blocks": 32, "num_features": 256, "res_scale": 0.1, "scales": [2]},
    "mdsr_baseline": {
        "arch": "mdsr",
        "num_blocks": 16,
        "num_features": 64,
        "res_scale": 1.0,
        "scales": [2, 3, 4],
    },
    "mdsr": {"arch": "mdsr", "num_blocks": 80, "num_features": 64, "res_scale": 1.0, "scales": [2, 3, 4]},
}
DRY_SIZES = {"edsr_baseline_x2": (1, 8), "edsr_x2": (2, 8), "mdsr_baseline": (1, 8), "mdsr": (2, 8)}

# XLA:GPU options tried on the EDSR baseline's program, per compiled program (compiler_options;
# names and values checked in jaxlib 0.11.2). None: the library's own choice (edsr_jax.compiler_options).
#  * cmdbuf_conv: XLA's default command-buffer (CUDA graph) kinds plus CONVOLUTION, so the
#    cuDNN convolutions join the graphs instead of splitting them into ~100 pieces per step.
#  * cmdbuf_conv_loop: also WHILE and CONDITIONAL: the K-step loop (and MDSR's scale switch)
#    become one graph, launched once per call.
#  * lhs: the latency-hiding scheduler (overlaps independent work; its effect without
#    collectives is small, measured here rather than assumed).
#  * cmdbuf_off: no command buffers at all (how much the default ones give).
_CMDBUF_DEFAULT = "FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,DYNAMIC_SLICE_FUSION"
COMPILER_VARIANTS = {
    "default": None,
    "cmdbuf_conv": {"xla_gpu_enable_command_buffer": f"{_CMDBUF_DEFAULT},CONVOLUTION"},
    "cmdbuf_conv_loop": {"xla_gpu_enable_command_buffer": f"{_CMDBUF_DEFAULT},CONVOLUTION,WHILE,CONDITIONAL"},
    "lhs": {"xla_gpu_enable_latency_hiding_scheduler": True},
    "cmdbuf_off": {"xla_gpu_enable_command_buffer": ""},
}

# Targets (issue 24), judged on the bf16 rows with the library's own compiler options.
TARGET_GEMM_SHARE = 0.40  # full EDSR x2: conv FLOP rate over the measured bf16 GEMM rate
TARGET_BASELINE_STEPS = 1000.0  # EDSR baseline x2 steps/s
TARGET_MDSR_STEPS = 250.0  # MDSR steps/s
TARGET_VS_TORCH = 1.2  # edsr-jax steps/s over PyTorch's fastest mode, per model
TARGET_HOURS = 2.5  # the paper's 300k-step EDSR x2, projected
PAPER_STEPS, PAPER_EVAL_EVERY = 300_000, 10_000  # edsr_x2: steps, validation cadence


def models_for(dry_run: bool) -> dict:
    """:data:`MODELS`, shrunk to :data:`DRY_SIZES` for a dry run."""
    if not dry_run:
        return MODELS
    return {
        name: {**spec, "num_blocks": DRY_SIZES[name][0], "num_features": DRY_SIZES[name][1]}
        for name, spec in MODELS.items()
    }


def jax_step(model: str, precision: str, options: str = "default") -> dict:
    """A plan item of the jax part: the training program of ``model``."""
    name = f"jax {model} {precision}" + ("" if options == "default" else f" {options}")
    return {"item": name, "do": "step", "model": model, "precision": precision, "options": options}


def make_plan(dry_run: bool) -> dict:
    """What each part measures, in priority order (later items are the first to be skipped)."""
    # Validation: DIV2K 0801-0810 at x2 (LR 1020x678 of DIV2K's 2040x1356).
    validation = {
        "model": "edsr_x2",
        "images": 2 if dry_run else 10,
        "lr_hw": [24, 32] if dry_run else [678, 1020],
    }
    jax_items = [
        {"item": "jax ceilings", "do": "ceilings"},
        jax_step("edsr_baseline_x2", "bf16"),
        jax_step("edsr_x2", "bf16"),
        jax_step("mdsr_baseline", "bf16"),
        {"item": "jax validation", "do": "validation", **validation},
        jax_step("edsr_baseline_x2", "tf32"),
        jax_step("edsr_x2", "tf32"),
        *[jax_step("edsr_baseline_x2", "bf16", name) for name in COMPILER_VARIANTS if name != "default"],
        jax_step("mdsr", "bf16"),
    ]
    torch_order = [
        ("edsr_baseline_x2", "eager"),
        ("edsr_baseline_x2", "cuda_graph"),
        ("edsr_x2", "eager"),
        ("mdsr_baseline", "eager"),
        ("edsr_baseline_x2", "compile"),
        ("edsr_x2", "compile"),
        ("mdsr_baseline", "compile"),
        ("mdsr", "eager"),
    ]
    torch_items = [{"item": "torch ceilings", "do": "ceilings"}]
    torch_items += [
        {"item": f"torch {m} {mode}", "do": "step", "model": m, "mode": mode} for m, mode in torch_order
    ]
    train_runs = [("edsr_x2", 480, 96), ("edsr_baseline_x2", 3200, 640)]
    if dry_run:
        train_runs = [("edsr_x2", 8, 4), ("edsr_baseline_x2", 8, 4)]
    return {
        "dry_run": dry_run,
        "models": models_for(dry_run),
        "batch": 2 if dry_run else 16,
        "patch": 8 if dry_run else 48,
        "k": 4 if dry_run else 16,
        "seconds_per_row": 0.05 if dry_run else 1.5,
        "max_calls": 20 if dry_run else 4000,
        "gemm_n": 128 if dry_run else 8192,
        "copy_mib": 1 if dry_run else 2048,
        "reserve_s": DRY_ITEM_RESERVE_S if dry_run else ITEM_RESERVE_S,
        "variants": COMPILER_VARIANTS,
        "torch_compile_backend": "aot_eager" if dry_run else "inductor",
        # PyTorch's CPU threads (0: its default); one on a small shared CPU, where more threads
        # wait on each other (0.6 s per tiny step with 2 on a loaded 2-core machine, 2 ms with 1)
        "torch_threads": 1 if dry_run else 0,
        "jax": jax_items,
        "torch": torch_items,
        "train": {
            "runs": [
                {"item": f"train {c}", "config": c, "steps": s, "log_every": e} for c, s, e in train_runs
            ],
            "steps_per_call": 2 if dry_run else 16,
            "images": 3 if dry_run else 16,
            "image_hw": [96, 128] if dry_run else [678, 1020],  # DIV2K halved
            "fields": {"model.num_blocks": 1, "model.num_features": 8, "batch_size": 8, "patch_size": 12}
            if dry_run
            else {},
        },
    }


# --- running parts ---------------------------------------------------------------------------


def run_logged(argv: list[str], limit_s: float, log, xla_flags: str = "") -> tuple[int | None, float]:
    """Runs ``argv`` in a new process group (``xla_flags`` added to its ``XLA_FLAGS``), its output
    copied to ``log`` and stdout line by line; kills the group at ``limit_s``. Returns ``(exit
    status or None when killed, seconds)``."""
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    if xla_flags:
        env["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {xla_flags}".strip()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        start_new_session=True,
        errors="replace",
    )

    def copy():
        for line in proc.stdout:
            log.write(line)
            log.flush()
            print(f"  {line.rstrip()}", flush=True)

    reader = threading.Thread(target=copy, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=max(limit_s, 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # (this check's own child and the trainers it started)
        proc.wait()
        code = None
    reader.join(timeout=5)
    return code, time.perf_counter() - t0


def read_rows(path: str) -> list[dict]:
    """The JSON lines a worker appended (a line cut by a kill is dropped)."""
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def run_worker(part: str, plan: dict, limit_s: float, work: str, log) -> tuple[list[dict], dict]:
    """Runs ``device_{part}.py`` on the plan with a deadline; its rows, and one line on the part."""
    plan = {**plan, "deadline": time.time() + limit_s}
    plan_path, rows_path = os.path.join(work, f"{part}_plan.json"), os.path.join(work, f"{part}_rows.jsonl")
    with open(plan_path, "w", encoding="utf-8") as f:
        json.dump(plan, f)
    argv = [sys.executable, os.path.join(HERE, f"device_{part}.py"), plan_path, rows_path]
    code, wall = run_logged(argv, limit_s, log, DRY_XLA_FLAGS if plan["dry_run"] else "")
    status = (
        "finished"
        if code == 0
        else (f"stopped at its limit of {limit_s:.0f} s" if code is None else f"exited {code}")
    )
    return read_rows(rows_path), {"part": part, "limit_s": limit_s, "wall_s": wall, "status": status}


def missing_rows(items: list[dict], rows: list[dict], why: str) -> list[dict]:
    """A "skipped" row for each planned item that has no row."""
    seen = {r.get("item") for r in rows}
    return [{"item": item["item"], "skipped": why} for item in items if item["item"] not in seen]


# --- figures, targets, table -------------------------------------------------------------------


def gemm_ceiling(rows: list[dict]) -> float | None:
    """The measured bf16 GEMM rate (TFLOP/s): the faster of JAX's and PyTorch's."""
    rates = [r["tflops"] for r in rows if r.get("kind") == "ceiling" and r.get("what") == "gemm_bf16"]
    return max(rates) if rates else None


def add_rates(rows: list[dict], plan: dict, gemm: float | None) -> None:
    """Steps/s, convolution TFLOP/s and share of the GEMM rate of every timed step row, in place."""
    for row in rows:
        if row.get("kind") != "step" or "ms_per_step" not in row:
            continue
        spec = plan["models"][row["model"]]
        flops = conv_flops.train_step_flops(
            spec["arch"], row["batch"], row["patch"], spec["scales"], spec["num_blocks"], spec["num_features"]
        )
        seconds = row["ms_per_step"] / 1e3
        row.update(steps_per_s=1 / seconds, tflop_per_step=flops / 1e12, tflops=flops / seconds / 1e12)
        if gemm:
            row["gemm_share"] = row["tflops"] / gemm


def best(rows: list[dict], **match) -> dict | None:
    """The fastest timed step row whose fields equal ``match``."""
    found = [
        r
        for r in rows
        if r.get("kind") == "step" and "steps_per_s" in r and all(r.get(k) == v for k, v in match.items())
    ]
    return max(found, key=lambda r: r["steps_per_s"]) if found else None


def _setting(row: dict) -> str:
    if row["engine"] == "jax":
        options = "" if row["options"] == "default" else f" {row['options']}"
        return f"{row['precision']} K={row['k']}{options}"
    return row["mode"]


def projection(rows: list[dict]) -> dict | None:
    """The paper's 300k-step EDSR x2 (bf16, validation every 10k steps) in hours: from the step
    rows, and from the real trainer's steps/s where it ran."""
    step = best(rows, engine="jax", model="edsr_x2", precision="bf16", options="default")
    if step is None:
        return None
    val = next((r for r in rows if r.get("kind") == "validation" and "second_s" in r), None)
    validations = PAPER_STEPS // PAPER_EVAL_EVERY
    val_s = 0.0 if val is None else val["first_s"] + (validations - 1) * val["second_s"]
    out = {
        "step_hours": (PAPER_STEPS / step["steps_per_s"] + val_s) / 3600,
        "step_basis": _setting(step),
        "validation_s": val_s,
    }
    trained = next(
        (
            r
            for r in rows
            if r.get("kind") == "train"
            and r.get("config") == "edsr_x2"
            and "steps_per_s" in r
            and "error" not in r
        ),
        None,
    )
    if trained is not None:
        out["train_hours"] = (PAPER_STEPS / trained["steps_per_s"] + val_s) / 3600
    return out


def targets(rows: list[dict]) -> list[dict]:
    """Issue 24's targets: ``{"target", "value", "met"}`` (met None: not measured)."""
    out = []

    def add(target, value, met):
        out.append({"target": target, "value": value, "met": met})

    full = best(rows, engine="jax", model="edsr_x2", precision="bf16", options="default")
    if full is not None and "gemm_share" in full:
        add(
            f"full EDSR x2 bf16 >= {TARGET_GEMM_SHARE:.0%} of the bf16 GEMM rate",
            f"{full['gemm_share']:.1%} ({full['tflops']:.0f} TFLOP/s, {_setting(full)})",
            full["gemm_share"] >= TARGET_GEMM_SHARE,
        )
    else:
        add(f"full EDSR x2 bf16 >= {TARGET_GEMM_SHARE:.0%} of the bf16 GEMM rate", "not measured", None)
    for model, goal in (
        ("edsr_baseline_x2", TARGET_BASELINE_STEPS),
        ("mdsr_baseline", TARGET_MDSR_STEPS),
        ("mdsr", TARGET_MDSR_STEPS),
    ):
        row = best(rows, engine="jax", model=model, precision="bf16", options="default")
        text = f"{model} bf16 >= {goal:,.0f} steps/s"
        if row is None:
            add(text, "not measured", None)
        else:
            add(text, f"{row['steps_per_s']:,.1f} ({_setting(row)})", row["steps_per_s"] >= goal)
    for model in MODELS:
        ours = best(rows, engine="jax", model=model, precision="bf16", options="default")
        theirs = best(rows, engine="torch", model=model)
        text = f"{model}: edsr-jax >= {TARGET_VS_TORCH}x PyTorch's fastest mode"
        if ours is None or theirs is None:
            add(text, "not measured", None)
            continue
        ratio = ours["steps_per_s"] / theirs["steps_per_s"]
        add(
            text,
            f"{ratio:.2f}x ({ours['steps_per_s']:,.1f} vs {theirs['steps_per_s']:,.1f} {theirs['mode']})",
            ratio >= TARGET_VS_TORCH,
        )
    hours = projection(rows)
    text = f"paper's 300k-step EDSR x2 projected <= {TARGET_HOURS} h"
    if hours is None:
        add(text, "not measured", None)
    else:
        value = f"{hours['step_hours']:.2f} h from the step ({hours['step_basis']})"
        if "train_hours" in hours:
            value += f", {hours['train_hours']:.2f} h from edsr-jax train"
        add(
            text,
            value + f"; validations {hours['validation_s']:.0f} s",
            hours.get("train_hours", hours["step_hours"]) <= TARGET_HOURS,
        )
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(result: dict) -> str:
    """The compact table printed last (and written to device_check.txt)."""
    rows = result["rows"]
    versions = {r["engine"]: r for r in rows if r.get("kind") == "versions"}
    jv, tv = versions.get("jax", {}), versions.get("torch", {})
    dry = " (DRY RUN: tiny sizes on this machine, not figures)" if result["dry_run"] else ""
    jax_version = jv.get("packages", {}).get("jax", "?")
    head = (
        f"edsr-jax device check{dry}: {jv.get('device', '?')}; jax {jax_version}; "
        f"torch {tv.get('torch', '?')} (CUDA {tv.get('cuda')}); "
        f"{result['wall_s']:.0f} s of {result['budget_s']} s"
    )
    lines = [head] + ([f"nvidia-smi: {result['nvidia_smi']}"] if result["nvidia_smi"] else [])
    for engine in ("jax", "torch"):
        found = {r["what"]: r for r in rows if r.get("kind") == "ceiling" and r["engine"] == engine}
        if found:
            gemm, copy = found.get("gemm_bf16", {}), found.get("copy", {})
            lines.append(
                f"ceilings ({engine}): bf16 GEMM {_fmt(gemm.get('tflops'), '.1f')} TFLOP/s, "
                f"copy {_fmt(copy.get('tb_per_s'), '.2f')} TB/s (read + written)"
            )
    lines.append(
        f"{'engine':<6} {'model':<17} {'setting':<24} {'compile s':>9} {'ms/step':>9} {'steps/s':>9} "
        f"{'TFLOP/s':>8} {'%GEMM':>6}"
    )
    for r in rows:
        if r.get("kind") != "step" or "ms_per_step" not in r:
            continue
        share = None if "gemm_share" not in r else 100 * r["gemm_share"]
        lines.append(
            f"{r['engine']:<6} {r['model']:<17} {_setting(r):<24} {_fmt(r.get('compile_s'), '9.1f')} "
            f"{r['ms_per_step']:9.3f} {r['steps_per_s']:9.1f} {r['tflops']:8.1f} {_fmt(share, '6.1f')}"
        )
    for r in rows:
        if r.get("kind") == "validation":
            lines.append(
                f"validation {r['model']} bf16, {r['images']} images {r['lr_hw'][1]}x{r['lr_hw'][0]} LR: "
                f"first {r['first_s']:.2f} s (compiles), then {r['second_s']:.2f} s"
            )
        if r.get("kind") == "train" and "steps_per_s" in r:
            val = f", first validation {r['validation_s']:.1f} s" if "validation_s" in r else ""
            lines.append(
                f"edsr-jax train {r['config']} (K={r['steps_per_call']}): {r['steps_per_s']:.1f} steps/s, "
                f"data wait {100 * r['data_wait']:.0f}%, first log line {r['first_log_s']:.0f} s{val}"
            )
    for r in rows:
        if "error" in r:
            lines.append(f"error: {r['item']}{' K=' + str(r['k']) if 'k' in r else ''}: {r['error'][:200]}")
    skipped: dict[str, list[str]] = {}
    for r in rows:
        if "skipped" in r:
            skipped.setdefault(r["skipped"], []).append(r["item"])
    for why, items in skipped.items():
        lines.append(f"skipped ({why[:200]}): {', '.join(items)}")
    for p in result["parts"]:
        lines.append(
            f"part {p['part']}: {p['status']} after {p['wall_s']:.0f} s (limit {p['limit_s']:.0f} s)"
        )
    lines.append("targets:")
    for t in result["targets"]:
        met = {True: "met", False: "UNMET", None: "n/a"}[t["met"]]
        lines.append(f"  [{met:>5}] {t['target']}: {t['value']}")
    return "\n".join(lines)


def nvidia_smi() -> str:
    """The GPU's name, driver, memory and clocks as nvidia-smi reports them ("" without it)."""
    if shutil.which("nvidia-smi") is None:
        return ""
    query = "name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit"
    try:
        done = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"nvidia-smi failed: {err}"
    return done.stdout.strip()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="tiny sizes, any CPU: checks this script")
    p.add_argument("--out", default="", help="results folder (default $OUT, else ./device_check_out)")
    p.add_argument("--parts", default="jax,torch,train", help="parts to run, in order (%(default)s)")
    p.add_argument(
        "--wheels",
        default=device_train.WHEELS_DIR,
        help="wheels for edsr-jax train's missing modules (%(default)s)",
    )
    p.add_argument("--fetch-wheels", action="store_true", help="download the wheels into --wheels and exit")
    args = p.parse_args(argv)
    args.parts = [part for part in args.parts.split(",") if part]
    unknown = set(args.parts) - set(PART_LIMITS_S)
    if unknown:
        p.error(f"--parts: unknown {sorted(unknown)}; choose from {', '.join(PART_LIMITS_S)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.fetch_wheels:
        return device_train.fetch_wheels(args.wheels)
    t0 = time.perf_counter()
    budget = DRY_BUDGET_S if args.dry_run else BUDGET_S
    limits = DRY_PART_LIMITS_S if args.dry_run else PART_LIMITS_S
    min_part = DRY_MIN_PART_S if args.dry_run else MIN_PART_S
    out = args.out or os.environ.get("OUT") or os.path.join(os.getcwd(), "device_check_out")
    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    plan = make_plan(args.dry_run)
    plan["require_gpu"] = not args.dry_run
    result = {"dry_run": args.dry_run, "budget_s": budget, "nvidia_smi": nvidia_smi(), "plan": plan}
    result.update(parts=[], rows=[])
    ok = True
    with tempfile.TemporaryDirectory(prefix="device_check_") as work:
        for part in args.parts:
            items = plan[part]["runs"] if part == "train" else plan[part]
            limit = min(limits[part], budget - (time.perf_counter() - t0) - FINISH_RESERVE_S)
            no_gpu = not args.dry_run and any(
                r.get("kind") == "versions" and r.get("platform") not in (None, "gpu") for r in result["rows"]
            )
            if limit < min_part or no_gpu:
                why = "JAX sees no GPU (use --dry-run on a CPU)" if no_gpu else "the check's budget was spent"
                rows, info = (
                    missing_rows(items, [], why),
                    {"part": part, "limit_s": 0, "wall_s": 0, "status": "skipped"},
                )
                ok = False
            else:
                print(f"== {part} (limit {limit:.0f} s)", flush=True)
                with open(os.path.join(out, "logs", f"{part}.log"), "w", encoding="utf-8") as log:
                    rows, info = run_worker(part, {**plan, "wheels": args.wheels}, limit, work, log)
                rows += missing_rows(items, rows, f"not reached: the {part} part {info['status']}")
                ok = ok and info["status"] in ("finished", "skipped")
            for row in rows:
                row.setdefault("engine", part)
            result["rows"] += rows
            result["parts"].append(info)
    add_rates(result["rows"], plan, gemm_ceiling(result["rows"]))
    result["targets"] = targets(result["rows"])
    result["wall_s"] = time.perf_counter() - t0
    text = table(result)
    with open(os.path.join(out, "device_check.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(out, "device_check.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
    print(text, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
