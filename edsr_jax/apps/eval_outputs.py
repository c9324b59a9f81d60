"""What ``edsr-jax eval`` leaves besides its table: the scored SR images with CSVs, and an HTML report.

The report is one self-contained page: tables against bicubic (and a second model), a sortable
per-image table, and each image's crops where the model gains most, with a before/after slider.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
from collections.abc import Sequence

import numpy as np

from edsr_jax import atomic, evaluate, overwrite
from edsr_jax.data.benchmarks import Sample
from edsr_jax.errors import UserError, listing
from edsr_jax.imaging import files, metrics

# Side of the report's crops (HR pixels) and their enlargement on the page.
CROP = 96
ZOOM = 2


def check_outputs(
    files_: Sequence[str], save_results: str | None, datasets: Sequence[str], *, force: bool, inputs=()
) -> None:
    """Checks every file an evaluation will write, before any scoring (:mod:`edsr_jax.overwrite`).

    Existing outputs are replaced only with ``force``; one inside ``inputs`` is refused.
    """
    for path in files_:
        overwrite.check_file(path, force=force, inputs=inputs)
    if save_results is None:
        return
    if os.path.isfile(save_results):
        raise UserError(f"the results folder {save_results} is a file")
    owner = overwrite.owner_of(os.path.join(save_results, "x"))
    if owner:
        raise UserError(f"refusing to write into {save_results}: it is {owner}")
    overwrite.check_writable(os.path.join(save_results, "x"))
    if not os.path.isdir(save_results) or force:
        return
    earlier = sorted(
        n
        for n in os.listdir(save_results)
        for d in datasets
        if (n.startswith(f"{d}_x") and n.endswith(".csv")) or n == d
    )
    if earlier:
        raise UserError(
            f"the results folder {save_results} holds an earlier evaluation's results ({listing(earlier)}); "
            "pass --force to replace them"
        )


class ResultSaver:
    """``on_output`` hook of :func:`edsr_jax.evaluate.evaluate_sets` that writes the SR images."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self, dataset: str, scale: int, sample: Sample, sr: np.ndarray) -> None:
        folder = os.path.join(self.folder, dataset, f"x{scale}")
        os.makedirs(folder, exist_ok=True)
        files.write_image(os.path.join(folder, f"{sample.name}_x{scale}_SR.png"), sr)

    def write_tables(self, results: Sequence[dict]) -> list[str]:
        """``<set>_x<s>.csv`` (name, psnr, ssim; skipped files with their error) per result."""
        paths = []
        for r in results:
            text = io.StringIO()
            writer = csv.writer(text)
            writer.writerow(["name", "psnr", "ssim", "skipped"])
            writer.writerows([i["name"], f"{i['psnr']:.4f}", f"{i['ssim']:.5f}", ""] for i in r["images"])
            writer.writerows([s["name"], "", "", s["error"]] for s in r.get("skipped") or [])
            path = os.path.join(self.folder, f"{r['dataset']}_x{r['scale']}.csv")
            os.makedirs(self.folder, exist_ok=True)
            atomic.write_text(path, text.getvalue())
            paths.append(path)
        return paths


def gain_window(bicubic: np.ndarray, sr: np.ndarray, hr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` square where the model's error gain over bicubic is largest."""
    from edsr_jax.apps.demo_report import detail_window

    error = lambda a: np.abs(a.astype(np.int32) - hr.astype(np.int32)).sum(-1)  # noqa: E731
    return detail_window(np.maximum(error(bicubic) - error(sr), 0), size)


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ReportCollector:
    """``on_output`` hook keeping, per image, its crops and its bicubic scores (for the report)."""

    def __init__(self, crop: int = CROP, protocol: metrics.Protocol | None = None):
        self.crop, self.protocol = crop, protocol
        self.images: dict[tuple[str, int], list[dict]] = {}

    def __call__(self, dataset: str, scale: int, sample: Sample, sr: np.ndarray) -> None:
        bicubic = metrics.quantize_uint8(evaluate.bicubic(scale)(sample.lr))
        protocol = self.protocol or metrics.protocol_for_dataset(dataset)
        bic_psnr, bic_ssim = metrics.evaluate_pair(bicubic, sample.hr, scale=scale, protocol=protocol)
        size = min(self.crop, *sample.hr.shape[:2])
        y, x = gain_window(bicubic, sr, sample.hr, size)
        crops = [a[y : y + size, x : x + size] for a in (bicubic, sr, sample.hr)]
        self.images.setdefault((dataset, scale), []).append(
            {
                "name": sample.name,
                "bicubic_psnr": bic_psnr,
                "bicubic_ssim": bic_ssim,
                "crop": [y, x, size],
                "bicubic": _png(crops[0]),
                "sr": _png(crops[1]),
                "hr": _png(crops[2]),
            }
        )


_STYLE = """
body {font-family: system-ui, sans-serif; margin: 24px; color: #222}
table {border-collapse: collapse; margin: 8px 0 20px}
th, td {border: 1px solid #ccc; padding: 3px 8px; text-align: right}
th {background: #f3f3f3; cursor: pointer}
td:first-child, th:first-child {text-align: left}
.gain {color: #0a6b0a} .loss {color: #a00}
.viewer {display: inline-block; margin: 0 18px 18px 0; vertical-align: top}
.viewer img {image-rendering: pixelated}
figure {display: inline-block; margin: 0 6px}
.slider {position: relative; display: inline-block}
.slider .top {position: absolute; left: 0; top: 0; overflow: hidden}
.slider .top img {max-width: none}
.slider input {display: block; width: 100%}
"""
_SCRIPT = """
function value(row, col) {
  var cell = row.cells[col];
  return cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent;
}
document.querySelectorAll("table.sortable th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var rows = Array.from(body.rows);
    var asc = th.dataset.order !== "asc";
    th.dataset.order = asc ? "asc" : "desc";
    rows.sort(function (a, b) {
      var x = value(a, col), y = value(b, col), nx = parseFloat(x), ny = parseFloat(y);
      var c = isNaN(nx) || isNaN(ny) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
document.querySelectorAll(".slider input").forEach(function (s) {
  s.addEventListener("input", function () {
    s.parentNode.querySelector(".top").style.width = s.value + "%";
  });
});
"""


def _cell(value: float | None, digits: int) -> str:
    if value is None or not np.isfinite(value):
        return "<td>-</td>"
    return f'<td data-v="{value}">{value:.{digits}f}</td>'


def _gain(value: float) -> str:
    if not np.isfinite(value):
        return "<td>-</td>"
    return f'<td data-v="{value}" class="{"gain" if value >= 0 else "loss"}">{value:+.2f}</td>'


def _img(src: str, side: int, label: str) -> str:
    return f"<img class='crop' src='{src}' width='{side}' height='{side}' alt='{html.escape(label)}'>"


def _viewer(name: str, c: dict) -> str:
    """One image's crops (bicubic | model | HR) and a slider between bicubic and the model."""
    y, x, size = c["crop"]
    side = size * ZOOM
    figures = "".join(
        f"<figure>{_img(c[key], side, label)}<figcaption>{label}</figcaption></figure>"
        for key, label in (("bicubic", "bicubic"), ("sr", "model"), ("hr", "HR"))
    )
    slider = (
        f"<div class='slider' style='width:{side}px'>{_img(c['bicubic'], side, 'bicubic')}"
        f"<div class='top' style='width:50%'>{_img(c['sr'], side, 'model')}</div>"
        "<input type='range' min='0' max='100' value='50' aria-label='model | bicubic'></div>"
    )
    title = f"{html.escape(name)}: crop ({y}, {x}), {size}x{size} HR pixels"
    return f"<div class='viewer'><div>{title}</div>{figures}{slider}</div>"


def _table(head: list[str], rows: list[str], css: str) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(rows)
    return f"<table class='sortable {css}'><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def _summary(results: Sequence[dict], collected: ReportCollector, other: dict, compare_name: str) -> str:
    head = ["set", "scale", "images", "bicubic PSNR", "bicubic SSIM", "model PSNR", "model SSIM", "gain dB"]
    head += [f"{compare_name} PSNR", "vs it dB"] if other else []
    rows = []
    for r in results:
        images = collected.images.get((r["dataset"], r["scale"]), [])
        bic = float(np.mean([i["bicubic_psnr"] for i in images])) if images else float("nan")
        bic_ssim = float(np.mean([i["bicubic_ssim"] for i in images])) if images else float("nan")
        row = f"<tr><td>{html.escape(r['dataset'])}</td><td>x{r['scale']}</td><td>{len(r['images'])}</td>"
        row += _cell(bic, 2) + _cell(bic_ssim, 4) + _cell(r["psnr"], 2) + _cell(r["ssim"], 4)
        row += _gain(r["psnr"] - bic)
        if other:
            o = other.get((r["dataset"], r["scale"]))
            row += (_cell(o["psnr"], 2) + _gain(r["psnr"] - o["psnr"])) if o else "<td>-</td><td>-</td>"
        rows.append(row + "</tr>")
    return _table(head, rows, "summary")


def _per_image(r: dict, images: dict, others: dict, compare_name: str) -> str:
    head = ["image", "bicubic PSNR", "model PSNR", "gain dB", "model SSIM"]
    head += [f"{compare_name} PSNR"] if others else []
    rows = []
    for i in r["images"]:
        bic = images.get(i["name"], {}).get("bicubic_psnr", float("nan"))
        row = f"<tr class='image-row'><td>{html.escape(i['name'])}</td>{_cell(bic, 2)}{_cell(i['psnr'], 2)}"
        row += _gain(i["psnr"] - bic) + _cell(i["ssim"], 4)
        if others:
            row += _cell(others[i["name"]]["psnr"], 2) if i["name"] in others else "<td>-</td>"
        rows.append(row + "</tr>")
    return _table(head, rows, "per-image")


def script_json(payload) -> str:
    """``payload`` as JSON safe inside ``<script>``: ``<``, ``>``, ``&`` escaped, as browsers do not
    decode entities there.
    """
    text = json.dumps(atomic.finite_or_null(payload), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def write_report(
    path: str,
    results: Sequence[dict],
    collected: ReportCollector,
    *,
    title: str,
    compare: Sequence[dict] | None = None,
    compare_name: str = "",
) -> None:
    """The self-contained HTML report of an evaluation."""
    other = {(r["dataset"], r["scale"]): r for r in compare or ()}
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        "<h2>Summary</h2>",
        _summary(results, collected, other, compare_name),
    ]
    for r in results:
        key = (r["dataset"], r["scale"])
        images = {i["name"]: i for i in collected.images.get(key, [])}
        others = {i["name"]: i for i in other[key]["images"]} if key in other else {}
        parts.append(f"<h2>{html.escape(r['dataset'])} x{r['scale']}</h2>")
        parts.append(_per_image(r, images, others, compare_name))
        parts += [_viewer(name, c) for name, c in images.items()]
    summary = [{k: r[k] for k in ("dataset", "scale", "psnr", "ssim")} for r in results]
    meta = script_json({"title": title, "results": summary})
    parts.append(f"<script type='application/json' id='edsr-jax-results'>{meta}</script>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    atomic.write_text(path, "\n".join(parts))
