"""Checkpoint sweeps: score kept steps of a training run (or read training's own validation
history), and write PSNR against step as JSON, CSV and a PNG plot.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence

from edsr_jax import atomic
from edsr_jax.errors import UserError
from edsr_jax.extras import require

# Validation scalars training writes: "<set>/psnr_x<s>" (set "val" for the validation split).
_PSNR_TAG = re.compile(r"^(?P<dataset>[^/]+)/psnr_x(?P<scale>\d+)$")
# The files of a curve: PREFIX + each of these.
CURVE_EXTENSIONS = (".json", ".csv", ".png")


def _with_manager(workdir: str, read):
    """``read(manager)`` on a read-only manager of ``workdir``'s checkpoints (None: no checkpoints/)."""
    from edsr_jax.checkpoint import layout, manager

    folder = layout.checkpoint_dir(workdir)
    if not os.path.isdir(folder):
        return None
    ckpt = manager.create_manager(folder, read_only=True, async_save=False)
    try:
        return read(ckpt)
    finally:
        ckpt.close()


def kept_steps(workdir: str) -> list[int]:
    """The complete checkpoints of a training workdir, ascending (read-only)."""
    from edsr_jax.checkpoint import layout, manager

    steps = _with_manager(workdir, manager.complete_steps)
    if steps is None:
        raise UserError(f"{workdir} has no {layout.CHECKPOINTS_DIR}/ folder: not a training workdir")
    return steps


def step_number(checkpoint: str, which: int | str) -> int | None:
    """The step ``which`` names in a training workdir (None: an exported model), resolved once so the
    step loaded is the step reported.
    """
    from edsr_jax.checkpoint import manager

    return _with_manager(checkpoint, lambda ckpt: manager.resolve_step(ckpt, which))


def resolve_steps(workdir: str, which: str) -> list[int | str]:
    """``all``, ``best``, ``latest`` or ``N,M`` as kept steps; UserError naming the kept ones."""
    steps = kept_steps(workdir)
    if not steps:
        raise UserError(f"no complete checkpoint in {workdir} yet")
    if which == "all":
        return list(steps)
    if which in ("best", "latest"):
        return [which]
    try:
        wanted = [int(v) for v in which.split(",") if v.strip()]
    except ValueError:
        raise UserError(
            f"steps must be all, best, latest or step numbers such as 1000,2000; got {which!r}"
        ) from None
    missing = [s for s in wanted if s not in steps]
    if missing or not wanted:
        raise UserError(f"steps {missing or which} are not kept in {workdir}; kept steps: {steps}")
    return wanted


def curve_rows(runs: Sequence[tuple[int, Sequence[dict]]]) -> list[dict]:
    """Rows ``{"step", "dataset", "scale", "psnr", "ssim"}`` of ``[(step, evaluate_sets results)]``."""
    return [
        {
            "step": int(step),
            "dataset": r["dataset"],
            "scale": int(r["scale"]),
            "psnr": r["psnr"],
            "ssim": r["ssim"],
        }
        for step, results in runs
        for r in results
    ]


def curve_from_logs(workdir: str) -> list[dict]:
    """The validation history training wrote to its TensorBoard events, as :func:`sweep` rows."""
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(workdir, size_guidance={event_accumulator.SCALARS: 0})
    events.Reload()
    tags = events.Tags().get("scalars", [])
    rows = []
    for tag in tags:
        match = _PSNR_TAG.match(tag)
        if not match:
            continue
        ssim_tag = tag.replace("/psnr_", "/ssim_")
        ssim = {e.step: e.value for e in events.Scalars(ssim_tag)} if ssim_tag in tags else {}
        for event in events.Scalars(tag):
            rows.append(
                {
                    "step": int(event.step),
                    "dataset": match["dataset"],
                    "scale": int(match["scale"]),
                    "psnr": float(event.value),
                    "ssim": ssim.get(event.step),
                }
            )
    if not rows:
        raise UserError(f"no validation scores (<set>/psnr_x<s>) in the TensorBoard events of {workdir}")
    return sorted(rows, key=lambda r: (r["dataset"], r["scale"], r["step"]))


def best_steps(rows: Sequence[dict]) -> dict[tuple[str, int], dict]:
    """``{(dataset, scale): the row with the highest PSNR}`` (the earliest step on ties)."""
    best: dict[tuple[str, int], dict] = {}
    for row in sorted(rows, key=lambda r: r["step"]):
        key = (row["dataset"], row["scale"])
        if key not in best or row["psnr"] > best[key]["psnr"]:
            best[key] = row
    return best


def plot(rows: Sequence[dict], title: str) -> bytes:
    """PNG bytes of PSNR against step, the best step marked; its own Agg ``Figure``, so no global
    matplotlib state changes.
    """
    require("matplotlib", "the plot of a checkpoint sweep (--curve)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    best = best_steps(rows)
    for (dataset, scale), top in sorted(best.items()):
        line = sorted(
            (r for r in rows if (r["dataset"], r["scale"]) == (dataset, scale)), key=lambda r: r["step"]
        )
        drawn = axes.plot(
            [r["step"] for r in line], [r["psnr"] for r in line], marker=".", label=f"{dataset} x{scale}"
        )
        axes.plot([top["step"]], [top["psnr"]], marker="*", markersize=14, color=drawn[0].get_color())
        axes.annotate(
            f"{top['psnr']:.2f} @ {top['step']}",
            (top["step"], top["psnr"]),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
        )
    axes.set_xlabel("step")
    axes.set_ylabel("PSNR (dB)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def curve_paths(prefix: str) -> list[str]:
    """The files :func:`write_curve` writes for ``prefix``."""
    return [prefix + ext for ext in CURVE_EXTENSIONS]


def write_curve(prefix: str, rows: Sequence[dict], title: str) -> list[str]:
    """``prefix.json`` (rows and best steps), ``prefix.csv`` and ``prefix.png``; returns the paths."""
    best = best_steps(rows)
    payload = {
        "rows": list(rows),
        "best": [{"dataset": d, "scale": s, **r} for (d, s), r in sorted(best.items())],
    }
    atomic.write_json(prefix + ".json", payload)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=["step", "dataset", "scale", "psnr", "ssim"])
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(prefix + ".csv", text.getvalue())
    atomic.write_bytes(prefix + ".png", plot(rows, title))
    return curve_paths(prefix)
