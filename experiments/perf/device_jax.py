"""The JAX half of ``device_check.py``: ceilings, the library's training programs, one validation.

Run by ``device_check.py`` in a process of its own (JAX and PyTorch never share one)::

    python experiments/perf/device_jax.py PLAN.json ROWS.jsonl

Each result is one JSON line appended to ``ROWS.jsonl`` as soon as it is measured, so a part that
``device_check.py`` stops at its time limit keeps what it had measured. Rows (``kind``):

* ``versions``: jax, jaxlib, flax, optax, the CUDA plugin, the device.
* ``ceiling``: a bf16 GEMM (TFLOP/s) and a device copy (``x + 1`` on float32: TB/s counting the
  bytes read and written).
* ``step``: the training program ``edsr-jax train`` runs, built as ``edsr_jax.train`` builds it
  (``create_model`` with the precision policy, ``create_optimizer``, ``create_train_state``,
  ``compile_train_steps`` with ``step_options``) on device-resident uint8 batches of K stacked
  steps: compile seconds (lower + compile) and ms/step at ``count`` 1 (one step per dispatch, as
  with ``steps_per_call = 1``: the same loop body, run once per call) and ``count`` K, each timed
  over many calls with one host sync at the end. ``options`` names the XLA options it was
  compiled with (``plan["variants"]``; "default": the library's own); options that do not
  compile give a row with the error, and the run goes on.
* ``validation``: ``edsr_jax.evaluate.Validation`` (training's validation) on generated images:
  the first call (compiling the upscaler) and a second one.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO_ROOT)

from edsr_jax import evaluate, models, optim, precision, sharding, train  # noqa: E402
from edsr_jax import train_step as steps  # noqa: E402
from edsr_jax.data.benchmarks import Sample  # noqa: E402
from edsr_jax.imaging import metrics  # noqa: E402

# The fields of edsr_jax/configs/default.py that the training program reads (the paper's recipe),
# as values: that file needs ml_collections, which the GPU hosts lack. A test keeps them equal.
RECIPE = {
    "learning_rate": 1e-4,
    "learning_rate_schedule": "step",
    "learning_rate_decay_steps": 200_000,
    "learning_rate_decay_factor": 0.5,
    "warmup_fraction": 0.0,
    "num_train_steps": 300_000,
    "adam_b1": 0.9,
    "adam_b2": 0.999,
    "adam_eps": 1e-8,
    "loss": "l1",
    "ema_decay": 0.0,
    "grad_clip_norm": 0.0,
    "skip_loss_factor": 0.0,
}
# Distributions whose versions the versions row reports (those installed).
DISTRIBUTIONS = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "jax-cuda13-plugin",
    "jax-cuda12-plugin",
)


def config_of(spec: dict, precision: str) -> types.SimpleNamespace:
    """The run config ``edsr_jax.train`` reads for a model of ``plan["models"]`` (attribute access,
    like an ``ml_collections.ConfigDict``)."""
    model = types.SimpleNamespace(
        arch=spec["arch"],
        num_blocks=spec["num_blocks"],
        num_features=spec["num_features"],
        res_scale=spec["res_scale"],
    )
    return types.SimpleNamespace(**RECIPE, model=model, scales=tuple(spec["scales"]), precision=precision)


class Rows:
    """Appends rows to the JSONL file and prints a one-line summary of each."""

    def __init__(self, path: str):
        self.path = path

    def emit(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        print(f"row {json.dumps(shown)}", flush=True)


def error_text(err: BaseException) -> str:
    """One line naming an exception (XLA's messages run over many lines)."""
    return f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"


def timed_calls(call, sync, seconds: float, max_calls: int) -> tuple[float, int]:
    """Mean seconds per ``call()`` over as many calls as fit in about ``seconds`` (2 to
    ``max_calls``), with one ``sync`` after the last; one call is timed first to size the loop."""
    t0 = time.perf_counter()
    sync(call())
    once = max(time.perf_counter() - t0, 1e-6)
    n = int(min(max_calls, max(2, seconds / once)))
    t0 = time.perf_counter()
    out = None
    for _ in range(n):
        out = call()
    sync(out)
    return (time.perf_counter() - t0) / n, n


def versions() -> dict:
    """The versions row."""
    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    device = jax.devices()[0]
    return {
        "kind": "versions",
        "python": sys.version.split()[0],
        "packages": found,
        "platform": device.platform,
        "device": device.device_kind,
        "device_count": jax.device_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def gemm_ceiling(n: int, seconds: float) -> dict:
    """bf16 n x n x n products on random data: TFLOP/s."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.bfloat16)
    b = jax.random.normal(kb, (n, n), jnp.bfloat16)
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    per_call, calls = timed_calls(lambda: product(a, b), jax.block_until_ready, seconds, 1000)
    return {
        "kind": "ceiling",
        "what": "gemm_bf16",
        "n": n,
        "calls": calls,
        "tflops": 2.0 * n**3 / per_call / 1e12,
    }


def copy_ceiling(mib: int, seconds: float) -> dict:
    """``x + 1`` on a float32 array of ``mib`` MiB: TB/s counting bytes read and written."""
    x = jax.random.uniform(jax.random.key(1), (mib * 2**20 // 4,), jnp.float32)
    add = jax.jit(lambda v: v + 1.0)
    add(x).block_until_ready()
    per_call, calls = timed_calls(lambda: add(x), jax.block_until_ready, seconds, 1000)
    return {
        "kind": "ceiling",
        "what": "copy",
        "mib": mib,
        "calls": calls,
        "tb_per_s": 2.0 * x.nbytes / per_call / 1e12,
    }


def stacked_batches(spec: dict, batch: int, patch: int, k: int, mesh, seed: int = 0) -> list[dict]:
    """Device-resident stacked batches of K steps: one set per scale, each starting at another
    scale, so calls of one step still cycle through MDSR's scales."""
    rng = np.random.default_rng(seed)
    scales = list(spec["scales"])
    side = patch * max(scales)
    out = []
    for first in range(len(scales)):
        index = np.array([(first + i) % len(scales) for i in range(k)], np.int32)
        host = {
            "low_res": rng.integers(0, 256, (k, batch, patch, patch, 3), dtype=np.uint8),
            "high_res": rng.integers(0, 256, (k, batch, side, side, 3), dtype=np.uint8),
            "scale_index": index,
        }
        out.append(sharding.make_global_batch(host, mesh, stacked=True, replicated_keys=("scale_index",)))
    return out


def step_rows(plan: dict, item: dict) -> list[dict]:
    """Compiles the training program of ``item`` (model, precision, compiler options by name) and
    times it at count 1 and K; one row each."""
    spec, batch, patch, k = plan["models"][item["model"]], plan["batch"], plan["patch"], plan["k"]
    options = plan["variants"][item["options"]]  # (None: the library's own choice)
    base = {key: item[key] for key in ("item", "model", "precision", "options")}
    base.update(kind="step", batch=batch, patch=patch)
    mesh = sharding.create_mesh(jax.devices()[:1])
    platform = jax.devices()[0].platform
    config = config_of(spec, item["precision"])
    try:
        model = train.create_model(config, platform)
        policy = precision.resolve(item["precision"], platform)
        tx = optim.create_optimizer(config, model)
        state, shardings = steps.create_train_state(model, tx, mesh, jax.random.key(0))
        fn = steps.compile_train_steps(
            model,
            tx,
            optim.create_learning_rate_fn(config),
            mesh,
            shardings,
            model.scales,
            compiler_options=options,
            **steps.step_options(config, policy.matmul_precision),
        )
        batches = stacked_batches(spec, batch, patch, k, mesh)
        t0 = time.perf_counter()
        compiled = fn.lower(state, batches[0], np.int32(k)).compile()
        compile_s = time.perf_counter() - t0
    except Exception as err:  # a variant's options may not compile: its row says why, the run goes on
        return [{**base, "k": k, "error": error_text(err)}]
    holder = {"state": state, "calls": 0}

    def call(count: int):
        def one():
            b = batches[holder["calls"] % len(batches)]
            holder["calls"] += 1
            holder["state"], metrics = compiled(holder["state"], b, np.int32(count))
            return metrics

        return one

    sync = lambda metrics: jax.block_until_ready((metrics, holder["state"]))
    t0 = time.perf_counter()
    sync(call(k)())  # the first call: allocations, loading the program
    first_call_s = time.perf_counter() - t0
    rows = []
    for count in (1, k):
        per_call, calls = timed_calls(call(count), sync, plan["seconds_per_row"], plan["max_calls"])
        rows.append(
            {
                **base,
                "k": count,
                "compile_s": compile_s,
                "first_call_s": first_call_s,
                "calls": calls,
                "ms_per_step": 1e3 * per_call / count,
            }
        )
    losses = np.asarray(jax.device_get(call(1)()["loss"]))
    for row in rows:
        row["loss_finite"] = bool(np.isfinite(losses[0]))
    return rows


def validation_rows(plan: dict, item: dict) -> list[dict]:
    """Training's validation of ``item["model"]`` (bf16, fresh weights) on generated images of
    ``item["lr_hw"]``: seconds of the first call (it compiles the upscaler) and of the second."""
    spec = plan["models"][item["model"]]
    scale = spec["scales"][0]
    model = train.create_model(config_of(spec, "bf16"), jax.devices()[0].platform)
    variables = models.init(model, jax.random.key(0))
    rng = np.random.default_rng(0)
    h, w = item["lr_hw"]
    samples = [
        Sample(
            name=f"{i:04d}",
            lr=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
            hr=rng.integers(0, 256, (h * scale, w * scale, 3), dtype=np.uint8),
        )
        for i in range(item["images"])
    ]
    validation = evaluate.Validation(model, {"val": (metrics.get_protocol("div2k"), {scale: samples})})
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        scalars, _ = validation(variables)
        times.append(time.perf_counter() - t0)
    row = {key: item[key] for key in ("item", "model", "images", "lr_hw")}
    row.update(kind="validation", precision="bf16", first_s=times[0], second_s=times[1])
    row["psnr_finite"] = bool(np.isfinite(scalars[f"val/psnr_x{scale}"]))
    return [row]


def ceiling_rows(plan: dict, item: dict) -> list[dict]:
    """The GEMM and copy ceilings."""
    seconds = plan["seconds_per_row"]
    return [
        {"item": item["item"], **gemm_ceiling(plan["gemm_n"], seconds)},
        {"item": item["item"], **copy_ceiling(plan["copy_mib"], seconds)},
    ]


# What each plan item does (its "do").
TASKS = {"ceilings": ceiling_rows, "step": step_rows, "validation": validation_rows}


def run(plan: dict, rows: Rows) -> None:
    """The versions row, then every item of ``plan["jax"]`` in order; an item that would start
    within ``plan["reserve_s"]`` of the deadline gets a "skipped" row instead."""
    found = versions()
    rows.emit({"item": "jax versions", **found})
    if plan.get("require_gpu") and found["platform"] != "gpu":
        for item in plan["jax"]:
            rows.emit({"item": item["item"], "skipped": f"JAX runs on {found['platform']}, not a GPU"})
        return
    for item in plan["jax"]:
        if time.time() > plan["deadline"] - plan["reserve_s"]:
            rows.emit({"item": item["item"], "skipped": "the part's time was spent"})
            continue
        t0 = time.perf_counter()
        try:
            produced = TASKS[item["do"]](plan, item)
        except Exception as err:  # a failing measurement is a row; the next one still runs
            produced = [{"item": item["item"], "error": error_text(err)}]
        for row in produced:
            rows.emit({**row, "item_s": time.perf_counter() - t0})


def main(argv=None) -> int:
    plan_path, rows_path = (sys.argv[1:] if argv is None else argv)[:2]
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    run(plan, Rows(rows_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
