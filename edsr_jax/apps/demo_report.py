"""The demo's scores and figure: bicubic vs the model, through the one scoring loop, and crops of both."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from edsr_jax import evaluate
from edsr_jax.configs.demo import SCALE
from edsr_jax.data import benchmarks, pipeline
from edsr_jax.errors import UserError

# Side of the HR crops in the figure, and their enlargement (nearest neighbour) for viewing.
FIGURE_CROP = 96
FIGURE_ZOOM = 2
# Benchmark sets scored when a benchmark folder is given (if present in it).
BENCHMARK_SETS = ("Set5",)
# Name of the held-out photographs in the table.
HELD_OUT = "held-out"


def evaluation_sets(config, data_dir: str | None) -> list[tuple[str, list]]:
    """``[(name, samples)]``: the held-out photographs, then :data:`BENCHMARK_SETS` found in ``data_dir``."""
    sets = [(HELD_OUT, pipeline.create_eval_samples(config, "val")[SCALE])]
    if data_dir:
        if not os.path.isdir(data_dir):
            raise UserError(f"data_dir {data_dir} is not a folder")
        present = [n for n in BENCHMARK_SETS if os.path.isdir(os.path.join(data_dir, n))]
        if not present:
            raise UserError(
                f"data_dir {data_dir} holds none of {', '.join(BENCHMARK_SETS)} "
                "(expected e.g. DIR/Set5/HR/*.png)"
            )
        sets += [(n, benchmarks.load_benchmark(data_dir, n, SCALE)) for n in present]
    return sets


def score_sets(
    sets: Sequence[tuple[str, list]], upscale_fn: Callable, progress: Callable[[], None] | None = None
) -> tuple[list[dict], dict]:
    """``(rows, outputs)``: bicubic and the model on every set (Y, shave = scale).

    A row per set holds ``dataset``, ``images``, ``bicubic``, ``edsr``, ``gain_db`` and ``per_image``;
    ``outputs[(set, image)]`` is ``(bicubic, sr, hr)`` uint8 for the figure.
    """
    outputs: dict = {}
    rows = []
    for name, samples in sets:
        scored = {}
        for method, fn in (("bicubic", evaluate.bicubic(SCALE)), ("edsr", upscale_fn)):
            kept = {}
            scored[method] = evaluate.evaluate_images(
                fn,
                samples,
                scale=SCALE,
                progress=progress,
                on_output=lambda s, sr, kept=kept: kept.update({s.name: sr}),
            )
            for s in samples:
                outputs.setdefault((name, s.name), {})[method] = kept[s.name]
        for s in samples:
            parts = outputs[(name, s.name)]
            outputs[(name, s.name)] = (parts["bicubic"], parts["edsr"], s.hr)
        bic, sr = scored["bicubic"], scored["edsr"]
        rows.append(
            {
                "dataset": name,
                "images": len(samples),
                "bicubic": {"psnr": bic["psnr"], "ssim": bic["ssim"]},
                "edsr": {"psnr": sr["psnr"], "ssim": sr["ssim"]},
                "gain_db": sr["psnr"] - bic["psnr"],
                "per_image": [
                    {"name": b["name"], "bicubic_psnr": b["psnr"], "edsr_psnr": e["psnr"]}
                    for b, e in zip(bic["images"], sr["images"], strict=True)
                ],
            }
        )
    return rows, outputs


def format_results(rows: Sequence[dict]) -> str:
    """The demo's table: per set, bicubic and EDSR PSNR/SSIM and the gain in dB."""
    lines = [f"{'dataset':<10} {'images':>6} {'bicubic PSNR/SSIM':>18} {'EDSR PSNR/SSIM':>17} {'gain':>8}"]
    for r in rows:
        b, e = r["bicubic"], r["edsr"]
        lines.append(
            f"{r['dataset']:<10} {r['images']:>6d} {b['psnr']:>10.2f} / {b['ssim']:.4f} "
            f"{e['psnr']:>9.2f} / {e['ssim']:.4f} {r['gain_db']:>+6.2f} dB"
        )
    return "\n".join(lines)


def detail_window(reference: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` square where ``reference`` (an error map) sums highest."""
    h, w = reference.shape[:2]
    size = min(size, h, w)
    stride = max(1, size // 4)
    best, corner = -1.0, (0, 0)
    integral = np.pad(reference.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    for y in range(0, h - size + 1, stride):
        for x in range(0, w - size + 1, stride):
            y1, x1 = y + size, x + size
            total = integral[y1, x1] - integral[y, x1] - integral[y1, x] + integral[y, x]
            if total > best:
                best, corner = total, (y, x)
    return corner


def comparison_figure(panels: Sequence[dict], crop: int = FIGURE_CROP, zoom: int = FIGURE_ZOOM) -> np.ndarray:
    """A uint8 figure, one row per panel: bicubic | EDSR | HR crops, enlarged, captioned with PSNR.

    Each crop is where bicubic is furthest from HR, chosen without looking at the model's output.
    """
    from PIL import Image, ImageDraw

    caption_h, pad = 14, 6
    cells = []
    for p in panels:
        error = np.abs(p["bicubic"].astype(np.int32) - p["hr"].astype(np.int32)).sum(-1)
        y, x = detail_window(error, crop)
        side = min(crop, *p["hr"].shape[:2])
        tiles = [a[y : y + side, x : x + side] for a in (p["bicubic"], p["sr"], p["hr"])]
        captions = [
            f"bicubic {p['bicubic_psnr']:.2f} dB",
            f"EDSR {p['edsr_psnr']:.2f} dB",
            f"HR: {p['title']}",
        ]
        cells.append((tiles, captions))
    cell = crop * zoom
    width = 3 * cell + 4 * pad
    header = 2 * caption_h
    height = header + len(cells) * (cell + caption_h + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    title = f"x{SCALE}: bicubic | EDSR | HR (crops x{zoom}); PSNR on the whole image (Y, shave {SCALE})"
    draw.text((pad, 2), title, fill=(0, 0, 0))
    for r, (tiles, captions) in enumerate(cells):
        top = header + r * (cell + caption_h + pad)
        for c, (tile, caption) in enumerate(zip(tiles, captions, strict=True)):
            left = pad + c * (cell + pad)
            draw.text((left, top), caption, fill=(0, 0, 0))
            img = Image.fromarray(np.ascontiguousarray(tile)).resize(
                (tile.shape[1] * zoom, tile.shape[0] * zoom), Image.NEAREST
            )
            canvas.paste(img, (left, top + caption_h))
    return np.asarray(canvas)


def figure_panels(rows: Sequence[dict], outputs: dict) -> list[dict]:
    """Per set, the image with the largest gain (the figure's rows)."""
    panels = []
    for r in rows:
        best = max(r["per_image"], key=lambda i: i["edsr_psnr"] - i["bicubic_psnr"])
        bic, sr, hr = outputs[(r["dataset"], best["name"])]
        panels.append(
            {
                "title": f"{r['dataset']}/{best['name']}",
                "bicubic": bic,
                "sr": sr,
                "hr": hr,
                "bicubic_psnr": best["bicubic_psnr"],
                "edsr_psnr": best["edsr_psnr"],
            }
        )
    return panels
