"""Markdown table of `edsr-jax eval --json` files beside the paper's Table 3.

    python experiments/tools/results_table.py runs/table3/json/*.json > runs/table3/table3.md

Each JSON file is one model (the file name, e.g. ``edsr_x2.json`` or ``edsr_x2_plus.json`` for the
self-ensemble run); rows are (dataset, scale), columns the models, cells ``PSNR / SSIM``. The
paper's EDSR and EDSR+ columns (Lim et al. 2017, Table 3) and the official PyTorch models' DIV2K
numbers are added for comparison.
"""

from __future__ import annotations

import json
import os
import re
import sys

# Paper Table 3: (dataset, scale) -> {column: "PSNR / SSIM" or "PSNR"}.
PAPER = {
    ("Set5", 2): {"paper EDSR": "38.11 / 0.9601", "paper EDSR+": "38.20 / 0.9606"},
    ("Set5", 3): {"paper EDSR": "34.65 / 0.9282", "paper EDSR+": "34.76 / 0.9290"},
    ("Set5", 4): {"paper EDSR": "32.46 / 0.8968", "paper EDSR+": "32.62 / 0.8984"},
    ("Set14", 2): {"paper EDSR": "33.92"},
    ("Set14", 3): {"paper EDSR": "30.52"},
    ("Set14", 4): {"paper EDSR": "28.80"},
    ("B100", 2): {"paper EDSR": "32.32"},
    ("B100", 3): {"paper EDSR": "29.25"},
    ("B100", 4): {"paper EDSR": "27.71"},
    ("Urban100", 2): {"paper EDSR": "32.93"},
    ("Urban100", 3): {"paper EDSR": "28.80"},
    ("Urban100", 4): {"paper EDSR": "26.64"},
    ("DIV2K", 2): {"paper EDSR": "35.03"},
    ("DIV2K", 3): {"paper EDSR": "31.26"},
    ("DIV2K", 4): {"paper EDSR": "29.25"},
}
PAPER_COLUMNS = ("paper EDSR", "paper EDSR+")
# Preferred column order (models); others follow alphabetically.
ORDER = ("edsr_baseline", "edsr", "mdsr_baseline", "mdsr")
DATASET_ORDER = ("Set5", "Set14", "B100", "Urban100", "DIV2K")


def model_column(path: str, payload: dict) -> str:
    """Column name: the file name without the scale (``edsr_x2_plus`` -> ``edsr+``)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    plus = stem.endswith("_plus") or payload.get("self_ensemble", False)
    stem = re.sub(r"_plus$", "", stem)
    stem = re.sub(r"_x\d$", "", stem)
    return stem + ("+" if plus else "")


def collect(paths: list[str]) -> tuple[dict, list[str]]:
    """``{(dataset, scale): {column: cell}}`` and the model columns in order."""
    cells: dict = {}
    columns: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
        column = model_column(path, payload)
        if column not in columns:
            columns.append(column)
        for r in payload["results"]:
            dataset = "DIV2K" if r["dataset"].upper().startswith("DIV2K") else r["dataset"]
            cells.setdefault((dataset, int(r["scale"])), {})[column] = f"{r['psnr']:.2f} / {r['ssim']:.4f}"

    def rank(c):
        base = c.rstrip("+")
        return (ORDER.index(base) if base in ORDER else len(ORDER), base, c.endswith("+"))

    return cells, sorted(columns, key=rank)


def markdown(cells: dict, columns: list[str]) -> str:
    """The table (rows sorted by dataset, then scale)."""
    keys = sorted(
        set(cells) | set(PAPER),
        key=lambda k: (
            DATASET_ORDER.index(k[0]) if k[0] in DATASET_ORDER else len(DATASET_ORDER),
            k[0],
            k[1],
        ),
    )
    keys = [k for k in keys if k in cells]
    header = ["set", "scale", *columns, *PAPER_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in keys:
        row = [key[0], f"x{key[1]}"]
        row += [cells[key].get(c, "") for c in columns]
        row += [PAPER.get(key, {}).get(c, "") for c in PAPER_COLUMNS]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "PSNR (dB) / SSIM; benchmarks on Y with shave = scale, DIV2K validation (0801-0900) on RGB "
        "with shave = scale + 6; `+` = x8 self-ensemble."
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: results_table.py EVAL.json [...]", file=sys.stderr)
        return 2
    cells, columns = collect(argv)
    print(markdown(cells, columns))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
