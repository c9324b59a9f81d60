"""``edsr-jax models``: the published models ``--model NAME`` takes; ``--fetch NAME ...`` caches them now.

Environment: ``EDSR_JAX_CACHE``, ``EDSR_JAX_OFFLINE``, ``EDSR_JAX_WEIGHTS_MIRROR``
(:mod:`edsr_jax.interop.pretrained`).
"""

from __future__ import annotations

HELP = "list the published models (--model NAME) and whether each is cached; --fetch downloads them"

COLUMNS = ("name", "network", "parameters", "size", "sources", "div2k_psnr", "cached")
HEADERS = ("name", "network", "parameters", "download", "sources", "DIV2K PSNR (dB)", "cached")


def add_arguments(parser) -> None:
    parser.add_argument(
        "--fetch", nargs="+", metavar="NAME", help="download, verify and convert these models into the cache"
    )
    parser.add_argument("--no-progress", action="store_true", help="no download progress bar")


def _cell(row: dict, column: str) -> str:
    value = row[column]
    if column == "parameters":
        return f"{value / 1e6:.2f}M"
    if column == "cached":
        return "yes" if value else "no"
    return str(value)


def table(rows: list[dict]) -> str:
    """The rows as aligned text columns."""
    cells = [HEADERS] + [tuple(_cell(r, c) for c in COLUMNS) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = ("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells)
    return "\n".join(lines)


def run(args) -> int:
    from edsr_jax.interop import pretrained, published

    for name in args.fetch or []:
        folder = pretrained.fetch(name, progress=not args.no_progress, log=print)
        print(f"{name}: {folder}")
    if args.fetch:
        return 0
    print(table([pretrained.describe(entry) for entry in published.entries().values()]))
    print(f"cache: {pretrained.cache_dir()} (set {pretrained.CACHE_ENV} to move it)")
    return 0
