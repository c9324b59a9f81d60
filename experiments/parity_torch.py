"""Does edsr-jax's trainer learn as well as the official EDSR recipe? Both side by side, one scorer.

Trains the same small EDSR x2 with the same recipe twice per seed: once with a PyTorch trainer of
the official EDSR-PyTorch recipe written here (:func:`train_torch`: the repository's independent
reference model ``tests/support/torch_reference.py``, a ``Dataset`` of random aligned crops with
the official augmentation, a ``DataLoader`` with worker processes), once with ``edsr-jax train``
as a user runs it (a subprocess with ``--config.*`` overrides). Both train on exactly the pairs
edsr-jax's ``skimage`` source gives (the 12 scikit-image photographs of
:data:`edsr_jax.data.sources.SKIMAGE_TRAIN` and their MATLAB-bicubic LR images made by
:func:`edsr_jax.imaging.resize.downscale`), and both are scored by the same evaluator: the PyTorch
weights converted with :func:`edsr_jax.interop.torch.convert_state_dict`, the edsr-jax run loaded
with :func:`edsr_jax.load_model`, each scored on Set5 x2 under the benchmark protocol (Y,
shave = scale) against MATLAB bicubic with :func:`edsr_jax.apps.demo_report.score_sets` (the
demo's gain over bicubic). The sides alternate per seed (torch s0, jax s0, torch s1, ...) so that
machine load hits both alike; everything is scored at the end. Target: the edsr-jax mean gain is
at least the PyTorch mean gain minus :data:`TARGET_MARGIN_DB`.

Same recipe, side by side:

=============  ======================================  ======================================
element        PyTorch (official recipe, here)         edsr-jax (``edsr-jax train``)
=============  ======================================  ======================================
data           12 skimage photos, edsr-jax's MATLAB    the same (``data.source=skimage``)
               bicubic LR (the same uint8 arrays)
sampling       image list repeated (an epoch is        a permutation of the images per pass,
               1000 batches), ``shuffle=True``,        consecutive rows take consecutive
               ``drop_last``; a batch may repeat an    images (with 12 images < 16 rows a
               image                                   batch repeats at most a few)
crop           uniform random LR position, HR at       the same; no flat-patch rejection
               scale x it (48x48 LR, 96x96 HR)         (``data.flat_patch_threshold=0``)
augmentation   hflip, vflip, transpose, p=0.5 each,    the same three coins, the same order
               the same for LR and HR
values         float in [0, 255] (uint8 cast)          the same (cast on the device)
loss           L1 (mean)                               L1 (mean)
optimizer      Adam 0.9/0.999, eps 1e-8                the same (``optax.scale_by_adam``)
schedule       5e-4 constant (or x factor every N)     ``learning_rate_schedule=step`` with decay steps >
                                                       steps (constant), or the same step decay
init           PyTorch's default (what the official    edsr-jax's PyTorch-style default
               code gets)
batch, steps   16, 600, seeded (``--seed``)            16, 600, ``config.seed``
=============  ======================================  ======================================

Command (the full measurement: 600 steps x 5 seeds per side; it wants the whole machine; the
run time is in ``experiments/perf/RESULTS.md``, "Training parity")::

    python experiments/parity_torch.py --json parity.json [--jax-variant bf16:precision=bf16]

The summary pairs the sides by seed: the mean difference of the gains, its standard deviation and
95 % t-interval; "within noise" unless the interval excludes 0. ``--jax-variant NAME:K=V[,K=V]``
adds an edsr-jax side ``jax_NAME`` trained with those config overrides too (compared with PyTorch
and with the plain edsr-jax side). B4 F48, batch 16, 48x48 is the default recipe. ``--quick``
(B1 F8, patch 16, batch 4, 3 steps, 1 seed) checks the plumbing in under a minute; its numbers
mean nothing.

``--ema-decay X`` (> 0) trains the edsr-jax side with ``--config.ema_decay=X`` and scores it twice:
raw weights (``load_model(workdir, weights="raw")``) and EMA weights (``weights="ema"``).
``--jax-override KEY=VALUE`` (repeatable) passes ``--config.KEY=VALUE`` to ``edsr-jax train``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BENCHMARKS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "data", "benchmarks")
# Both sides import this checkout's edsr_jax (not another installed copy); tests/ holds the
# reference PyTorch model.
for _path in (REPO_ROOT, os.path.join(REPO_ROOT, "tests")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import torch  # noqa: E402
from support import torch_reference  # noqa: E402

from edsr_jax.configs.demo import SCALE  # noqa: E402  (x2, the demo's and this recipe's scale)

# The benchmark set both sides are scored on.
BENCHMARK_SET = "Set5"
# The official --test_every: batches per DataLoader epoch (the image list is repeated to fill it).
EPOCH_BATCHES = 1000
# Steps/s are measured after this many steps (compilation, worker start-up, first decodes).
TIMED_AFTER = 10
# edsr-jax logs a line every this many steps (its step times are read from those lines).
LOG_EVERY = 10
# Target: the edsr-jax mean gain is at least the PyTorch mean gain minus this many dB.
TARGET_MARGIN_DB = 0.05
# --quick: a tiny run that checks the plumbing (its numbers mean nothing).
QUICK = {"blocks": 1, "features": 8, "patch": 16, "batch": 4, "steps": 3, "seeds": "0"}
# edsr-jax's log line of a training step: "step 10/600  loss ...".
STEP_LINE = re.compile(r"^step (\d+)/(\d+)\s")
# The XLA flag the tests set for fake CPU devices; a measured run uses the machine's devices.
FAKE_DEVICES_FLAG = re.compile(r"--xla_force_host_platform_device_count=\d+")
SIDES = ("torch", "jax")


# --- data ------------------------------------------------------------------------------------------


def load_pairs(scale: int = SCALE, patch: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(hr, lr)]`` uint8 (H, W, 3) of edsr-jax's ``skimage`` training split, as its pipeline gets them.

    Args:
      scale: the LR scale (LR made by :func:`edsr_jax.imaging.resize.downscale`).
      patch: when > 0, fail (as edsr-jax does) on an image smaller than this LR patch.
    """
    from edsr_jax.configs import demo
    from edsr_jax.data import cache, pipeline, sources

    data = demo.get_config().data  # source "skimage"
    source = sources.open_source(data, "train", (scale,))
    if patch > 0:
        pipeline.usable_images(source, (scale,), patch, "error")
    pairs = cache.PairCache(source)
    return [pairs.pair(i, scale) for i in range(len(source))]


def crop(low_res: np.ndarray, high_res: np.ndarray, y: int, x: int, patch: int, scale: int):
    """The LR patch with top-left (y, x) and its HR patch with top-left (scale*y, scale*x)."""
    hp = patch * scale
    return low_res[y : y + patch, x : x + patch], high_res[
        scale * y : scale * y + hp, scale * x : scale * x + hp
    ]


def augment(low_res: np.ndarray, high_res: np.ndarray, hflip: bool, vflip: bool, rot90: bool):
    """The official augmentation: flip W, flip H, then transpose H/W, the same for both."""
    if hflip:
        low_res, high_res = low_res[:, ::-1], high_res[:, ::-1]
    if vflip:
        low_res, high_res = low_res[::-1], high_res[::-1]
    if rot90:
        low_res, high_res = low_res.transpose(1, 0, 2), high_res.transpose(1, 0, 2)
    return low_res, high_res


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 HWC -> float32 CHW in [0, 255] (the official ``np2Tensor`` with rgb_range 255)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


class PatchDataset(torch.utils.data.Dataset):
    """One random aligned (LR, HR) crop per item, the official way; the image list is repeated.

    Randomness comes from numpy's global generator (seeded per DataLoader worker by
    :func:`seed_worker`, in the main process by :func:`seed_everything`).
    """

    def __init__(self, pairs, patch: int, scale: int, repeat: int = 1, augment: bool = True):
        self.pairs, self.patch, self.scale = list(pairs), int(patch), int(scale)
        self.repeat, self.augment = int(repeat), bool(augment)
        for i, (_, lr) in enumerate(self.pairs):
            if min(lr.shape[:2]) < self.patch:
                raise ValueError(f"pairs[{i}]: LR image {lr.shape[1]}x{lr.shape[0]} < patch={self.patch}")

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    def __getitem__(self, index: int):
        hr, lr = self.pairs[index % len(self.pairs)]
        y = np.random.randint(0, lr.shape[0] - self.patch + 1)
        x = np.random.randint(0, lr.shape[1] - self.patch + 1)
        lr_patch, hr_patch = crop(lr, hr, y, x, self.patch, self.scale)
        if self.augment:
            lr_patch, hr_patch = augment(lr_patch, hr_patch, *(np.random.random(3) < 0.5))
        return to_tensor(lr_patch), to_tensor(hr_patch)


def seed_everything(seed: int) -> None:
    """Seeds Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: numpy in each worker from torch's per-worker seed (torch does not)."""
    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(pairs, args) -> torch.utils.data.DataLoader:
    """The official loader: shuffled, repeated image list, ``drop_last``, seeded, ``args.workers``."""
    repeat = max(1, EPOCH_BATCHES * args.batch // len(pairs))
    dataset = PatchDataset(pairs, args.patch, SCALE, repeat=repeat)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch,
        shuffle=True,
        num_workers=args.workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(int(args.seed)),
        worker_init_fn=seed_worker,
    )


def endless(loader, steps: int):
    """``steps`` batches from ``loader``, epoch after epoch."""
    done = 0
    while done < steps:
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return


# --- the PyTorch trainer ---------------------------------------------------------------------------


def learning_rate_factor(step: int, args) -> float:
    """The learning-rate multiplier of update ``step`` (0-based), as edsr-jax's schedule."""
    if args.learning_rate_schedule == "constant":
        return 1.0
    return float(args.learning_rate_decay_factor) ** (step // int(args.learning_rate_decay_steps))


def step_stats(t0: float, step_ends: list[float], end: float, skip: int) -> dict:
    """``{"steps_per_s" (after ``skip`` steps; None if too few), "wall_s", "first_step_s"}``."""
    n = len(step_ends)
    rate = (n - skip) / (step_ends[-1] - step_ends[skip - 1]) if n > skip >= 1 else None
    return {"steps_per_s": rate, "wall_s": end - t0, "first_step_s": step_ends[0] - t0 if n else None}


def train_torch(pairs, args, *, skip_steps: int = TIMED_AFTER) -> tuple[dict, dict]:
    """Trains the official recipe in PyTorch.

    Args:
      pairs: ``[(hr, lr)]`` uint8 (H, W, 3) (:func:`load_pairs`).
      args: ``blocks``, ``features``, ``patch``, ``batch``, ``steps``, ``learning_rate``,
        ``learning_rate_schedule`` (``"constant"`` or ``"step"``, with ``learning_rate_decay_steps``
        and ``learning_rate_decay_factor``), ``workers`` and ``seed``.
      skip_steps: steps/s are measured after this many steps.

    Returns:
      ``(state_dict, stats)``: official key names, CPU tensors; ``stats = {"steps_per_s",
      "wall_s", "first_step_s"}`` (seconds from this call).

    Raises:
      RuntimeError: a non-finite loss (with the step).
    """
    t0 = time.perf_counter()
    seed_everything(int(args.seed))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.torch_threads or os.cpu_count() or 1)
    try:
        net = torch_reference.build_model("edsr", SCALE, num_blocks=args.blocks, num_features=args.features)
        net.train()
        trained = [p for p in net.parameters() if p.requires_grad]  # (not the fixed MeanShift)
        optimizer = torch.optim.Adam(trained, lr=args.learning_rate, betas=(0.9, 0.999), eps=1e-8)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: learning_rate_factor(k, args))
        step_ends = []
        for step, (lr_batch, hr_batch) in enumerate(endless(make_loader(pairs, args), args.steps)):
            optimizer.zero_grad()
            loss = torch.nn.functional.l1_loss(net(lr_batch), hr_batch)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"PyTorch: non-finite loss {loss.item()} at step {step + 1}")
            step_ends.append(time.perf_counter())
    finally:
        torch.set_num_threads(threads)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return state, step_stats(t0, step_ends, time.perf_counter(), skip_steps)


# --- the edsr-jax side -----------------------------------------------------------------------------


def jax_overrides(args, seed: int) -> list[str]:
    """``--config.K=V`` flags making ``--config demo`` the recipe of ``args`` (then ``--jax-override``)."""
    decay_steps = (
        args.steps + 1 if args.learning_rate_schedule == "constant" else args.learning_rate_decay_steps
    )
    fields = {
        "model.num_blocks": args.blocks,
        "model.num_features": args.features,
        "model.res_scale": 1.0,
        "precision": "fp32",
        "batch_size": args.batch,
        "patch_size": args.patch,
        "data.source": "skimage",
        "data.flat_patch_threshold": 0,
        "learning_rate": args.learning_rate,
        "learning_rate_schedule": "step",
        "learning_rate_decay_steps": decay_steps,
        "learning_rate_decay_factor": args.learning_rate_decay_factor,
        "warmup_fraction": 0,
        "adam_b1": 0.9,
        "adam_b2": 0.999,
        "adam_eps": 1e-8,
        "num_train_steps": args.steps,
        "seed": seed,
        "log_every_steps": LOG_EVERY,
        "eval_every_steps": 0,  # validation only at the end (it cannot be switched off) ...
        "eval.num_images": 1,  # ... on one held-out photograph
        "checkpoint_every_steps": 0,  # a checkpoint at the end only
        "keep_checkpoints": 1,
    }
    if args.ema_decay > 0:
        fields["ema_decay"] = args.ema_decay
    flags = [f"--config.{k}={v}" for k, v in fields.items()]
    return flags + [f"--config.{kv}" for kv in args.jax_override]


def jax_command(args, seed: int, workdir: str) -> list[str]:
    """``edsr-jax train`` as a user runs it, through this interpreter."""
    base = [sys.executable, "-m", "edsr_jax.cli", "train", "--config", "demo", "--workdir", workdir]
    base.append("--allow-other-files")  # (train.log is written into the workdir)
    return base + jax_overrides(args, seed)


def subprocess_env() -> dict:
    """This environment with this checkout first on PYTHONPATH and no fake XLA CPU devices (the
    tests' ``--xla_force_host_platform_device_count``): a run measures the machine's devices."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH", "")) if p)
    flags = FAKE_DEVICES_FLAG.sub("", env.get("XLA_FLAGS", "")).strip()
    if flags:
        env["XLA_FLAGS"] = flags
    else:
        env.pop("XLA_FLAGS", None)
    return env


def run_logged(command: list[str], log_path: str) -> dict:
    """Runs ``command``, timestamping its "step N/T" lines; its output goes to ``log_path``.

    Returns:
      ``{"launched": t, "ended": t, "steps": [(step, t), ...]}`` (``time.perf_counter`` times).

    Raises:
      RuntimeError: a non-zero exit (with the log's tail).
    """
    steps = []
    launched = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=subprocess_env(),
            cwd=REPO_ROOT,
        )
        for line in process.stdout:
            now = time.perf_counter()
            log.write(line)
            match = STEP_LINE.match(line)
            if match:
                steps.append((int(match.group(1)), now))
        code = process.wait()
    ended = time.perf_counter()
    if code != 0:
        with open(log_path, encoding="utf-8") as f:
            tail = "".join(f.readlines()[-25:])
        raise RuntimeError(f"{' '.join(command[:6])} ... exited with {code}; log {log_path}:\n{tail}")
    return {"launched": launched, "ended": ended, "steps": steps}


def logged_rate(steps: list[tuple[int, float]], skip: int) -> float | None:
    """Steps/s between the log line of step ``skip`` and the last one (None without both)."""
    after = [(s, t) for s, t in steps if s >= skip]
    if len(after) < 2 or after[0][0] != skip:
        return None
    (s0, t0), (s1, t1) = after[0], after[-1]
    return (s1 - s0) / (t1 - t0)


def train_jax(args, seed: int, workdir: str) -> dict:
    """Runs ``edsr-jax train`` for ``seed`` in ``workdir``; ``{"steps_per_s", "wall_s"}``."""
    os.makedirs(workdir, exist_ok=True)
    run = run_logged(jax_command(args, seed, workdir), os.path.join(workdir, "train.log"))
    return {"steps_per_s": logged_rate(run["steps"], TIMED_AFTER), "wall_s": run["ended"] - run["launched"]}


# --- scoring ---------------------------------------------------------------------------------------


def check_ema_api() -> None:
    """Raises SystemExit unless ``config.ema_decay`` and ``load_model(..., weights=)`` exist."""
    import edsr_jax
    from edsr_jax.configs import default

    missing = []
    if "ema_decay" not in default.get_config():
        missing.append("the config field ema_decay (edsr_jax/configs/default.py)")
    if "weights" not in inspect.signature(edsr_jax.load_model).parameters:
        missing.append("edsr_jax.load_model(path, weights='raw'|'ema')")
    if missing:
        raise SystemExit(f"--ema-decay needs {' and '.join(missing)}, which this checkout lacks")


def score(model, variables, benchmark_dir: str) -> dict:
    """Set5 x2 (Y, shave = scale): ``{"psnr", "bicubic_psnr", "gain_db"}`` (the demo's scoring)."""
    import jax
    import jax.numpy as jnp

    from edsr_jax import inference
    from edsr_jax.apps import demo_report
    from edsr_jax.data import benchmarks

    sets = [(BENCHMARK_SET, benchmarks.load_benchmark(benchmark_dir, BENCHMARK_SET, SCALE))]
    upscale = inference.make_upscaler(model, jax.tree.map(jnp.asarray, variables), SCALE)
    row = demo_report.score_sets(sets, upscale)[0][0]
    return {"psnr": row["edsr"]["psnr"], "bicubic_psnr": row["bicubic"]["psnr"], "gain_db": row["gain_db"]}


def score_torch(state_dict: dict, benchmark_dir: str) -> dict:
    """Scores PyTorch weights through the converter."""
    from edsr_jax.interop import torch as convert

    model, variables = convert.convert_state_dict({k: v.numpy() for k, v in state_dict.items()})
    return score(model, variables, benchmark_dir)


def score_jax(workdir: str, benchmark_dir: str, weights: str | None = None) -> dict:
    """Scores an ``edsr-jax train`` workdir (``weights``: None, ``"raw"`` or ``"ema"``)."""
    import edsr_jax

    extra = {} if weights is None else {"weights": weights}
    return score(*edsr_jax.load_model(workdir, **extra), benchmark_dir)


# --- the comparison --------------------------------------------------------------------------------


def train_all(args, pairs, workdir: str) -> list[dict]:
    """Trains every (seed, side), alternating sides per seed; rows with what scoring needs."""
    rows = []
    for seed in args.seed_list:
        for side in args.side_list:
            print(f"training {side} seed {seed} ...", flush=True)
            if side == "torch":
                state, stats = train_torch(pairs, argparse.Namespace(**{**vars(args), "seed": seed}))
                rows.append({"side": "torch", "seed": seed, **stats, "_state": state})
            else:
                run_dir = os.path.join(workdir, f"{side}_seed{seed}")
                variant = argparse.Namespace(
                    **{**vars(args), "jax_override": args.jax_override + args.variants[side]}
                )
                stats = train_jax(variant, seed, run_dir)
                rows.append({"side": side, "seed": seed, **stats, "_dir": run_dir})
            rate, wall = rows[-1]["steps_per_s"], rows[-1]["wall_s"]
            print(f"  {side} seed {seed}: {_fmt(rate, '.2f')} steps/s, {wall:.1f} s", flush=True)
    return rows


def score_all(args, trained: list[dict]) -> list[dict]:
    """One scored row per (seed, side) (with EMA: the edsr-jax side twice, "jax" and "jax_ema")."""
    print(f"scoring {len(trained)} runs on {BENCHMARK_SET} x{SCALE} ...", flush=True)
    rows = []
    for row in trained:
        base = {k: v for k, v in row.items() if not k.startswith("_")}
        if row["side"] == "torch":
            rows.append({**base, **score_torch(row["_state"], args.benchmark_dir)})
        elif args.ema_decay > 0:
            rows.append({**base, **score_jax(row["_dir"], args.benchmark_dir, "raw")})
            ema_side = f"{row['side']}_ema"
            rows.append({**base, "side": ema_side, **score_jax(row["_dir"], args.benchmark_dir, "ema")})
        else:
            rows.append({**base, **score_jax(row["_dir"], args.benchmark_dir)})
    return rows


def paired_difference(rows: list[dict], side: str, reference: str) -> dict | None:
    """Gain of ``side`` minus gain of ``reference``, paired by seed: mean, standard deviation, the
    95 % t-interval of the mean, and whether the interval excludes 0 (None without two pairs)."""
    from scipy import stats

    gains = {(r["side"], r["seed"]): r["gain_db"] for r in rows}
    diffs = [
        gains[(side, s)] - gains[(reference, s)] for (n, s) in gains if n == side and (reference, s) in gains
    ]
    if len(diffs) < 2:
        return None
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * sd / math.sqrt(len(diffs))
    return {
        "side": side,
        "reference": reference,
        "seeds": len(diffs),
        "differences_db": diffs,
        "mean_db": mean,
        "sd_db": sd,
        "interval_95_db": [mean - half, mean + half],
        "excludes_zero": not (mean - half <= 0 <= mean + half),
    }


def summarize(rows: list[dict]) -> dict:
    """Mean gain per side; each edsr-jax side's difference to PyTorch with its target verdict and
    paired 95 % interval; each edsr-jax variant against the plain edsr-jax side."""
    sides = {}
    for row in rows:
        sides.setdefault(row["side"], []).append(row["gain_db"])
    out = {
        "mean_gain_db": {s: statistics.fmean(g) for s, g in sides.items()},
        "comparisons": {},
        "paired": [],
    }
    if "torch" in sides:
        ref = out["mean_gain_db"]["torch"]
        for side in (s for s in sides if s != "torch"):
            diff = out["mean_gain_db"][side] - ref
            out["comparisons"][side] = {"difference_db": diff, "meets_target": diff >= -TARGET_MARGIN_DB}
    for side in sides:
        for reference in ("torch", "jax"):
            if side != reference and reference in sides and not (reference == "jax" and side == "torch"):
                paired = paired_difference(rows, side, reference)
                if paired is not None:
                    out["paired"].append(paired)
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(rows: list[dict], summary: dict) -> str:
    """The printed table: per seed and side, then the means and the verdict."""
    lines = [f"{'seed':>4} {'side':<8} {'PSNR':>7} {'bicubic':>7} {'gain':>7} {'steps/s':>8} {'wall s':>7}"]
    for r in rows:
        lines.append(
            f"{r['seed']:>4} {r['side']:<8} {r['psnr']:>7.3f} {r['bicubic_psnr']:>7.3f} "
            f"{r['gain_db']:>+7.3f} {_fmt(r['steps_per_s'], '>8.2f')} {r['wall_s']:>7.1f}"
        )
    for side, gain in summary["mean_gain_db"].items():
        lines.append(f"mean gain {side}: {gain:+.3f} dB")
    for side, c in summary["comparisons"].items():
        verdict = "meets" if c["meets_target"] else "misses"
        lines.append(
            f"{side} - torch: {c['difference_db']:+.3f} dB ({verdict} the target >= -{TARGET_MARGIN_DB} dB)"
        )
    for p in summary.get("paired", []):
        low, high = p["interval_95_db"]
        verdict = "excludes 0" if p["excludes_zero"] else "within noise"
        lines.append(
            f"{p['side']} - {p['reference']}, paired over {p['seeds']} seeds: {p['mean_db']:+.3f} dB "
            f"(sd {p['sd_db']:.3f}, 95 % interval [{low:+.3f}, {high:+.3f}]: {verdict})"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--features", type=int, default=48)
    p.add_argument("--patch", type=int, default=48, help="LR patch side")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=5e-4)
    p.add_argument("--learning-rate-schedule", choices=("constant", "step"), default="constant")
    p.add_argument(
        "--learning-rate-decay-steps", type=int, default=200, help="step schedule: steps between decays"
    )
    p.add_argument("--learning-rate-decay-factor", type=float, default=0.5, help="step schedule: multiplier")
    p.add_argument("--workers", type=int, default=2, help="PyTorch DataLoader worker processes")
    p.add_argument(
        "--torch-threads", type=int, default=0, help="PyTorch threads (0: one per core; 1 on a busy machine)"
    )
    p.add_argument("--benchmark-dir", default=DEFAULT_BENCHMARKS, help=f"folder holding {BENCHMARK_SET}")
    p.add_argument("--workdir", default="", help="where the edsr-jax runs go (default: a temp dir)")
    p.add_argument("--sides", default="torch,jax", help="torch, jax or both")
    p.add_argument("--ema-decay", type=float, default=0.0, help="> 0: edsr-jax trains an EMA, scored too")
    p.add_argument("--jax-override", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--jax-variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="another edsr-jax side, jax_NAME, trained with these overrides too (e.g. bf16:precision=bf16)",
    )
    p.add_argument("--quick", action="store_true", help="tiny run checking the plumbing")
    p.add_argument("--json", default="", metavar="PATH")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.side_list = [s.strip() for s in args.sides.split(",") if s.strip()]
    bad = [s for s in args.side_list if s not in SIDES]
    if bad or not args.side_list:
        p.error(f"--sides must name torch and/or jax, got {args.sides!r}")
    args.variants = {"jax": []}
    for text in args.jax_variant:
        name, _, overrides = text.partition(":")
        if not name or not overrides or not name.isidentifier():
            p.error(f"--jax-variant must look like NAME:KEY=VALUE[,KEY=VALUE], got {text!r}")
        args.variants[f"jax_{name}"] = [kv for kv in overrides.split(",") if kv]
        args.side_list.append(f"jax_{name}")
    if not args.seed_list:
        p.error(f"--seeds must list at least one seed, got {args.seeds!r}")
    if args.learning_rate_schedule == "step" and args.learning_rate_decay_steps < 1:
        p.error(f"--learning-rate-decay-steps must be >= 1, got {args.learning_rate_decay_steps}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if not os.path.isdir(os.path.join(args.benchmark_dir, BENCHMARK_SET)):
        raise SystemExit(f"--benchmark-dir {args.benchmark_dir} holds no {BENCHMARK_SET} folder")
    if args.ema_decay > 0:
        check_ema_api()
    workdir = args.workdir or tempfile.mkdtemp(prefix="parity_torch_")
    pairs = load_pairs(SCALE, args.patch) if "torch" in args.side_list else None
    try:
        rows = score_all(args, train_all(args, pairs, workdir))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(rows)
    print(report(rows, summary))
    if args.json:
        recipe = {
            k: v for k, v in vars(args).items() if k not in ("json", "seed_list", "side_list", "variants")
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"recipe": recipe, "rows": rows, "summary": summary}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
