"""``edsr-jax eval``: PSNR/SSIM on benchmark sets with the paper's protocol (``docs/protocol.md``).

Examples::

    edsr-jax eval --data-dir data/benchmarks --datasets Set5,Set14 --scales 2,3,4 --method bicubic
    edsr-jax eval --data-dir data/benchmarks --datasets Set5 --scales 2 --checkpoint models/edsr_x2
"""

from __future__ import annotations

import os
import sys

HELP = "evaluate a model (or bicubic) on benchmark sets: PSNR/SSIM on Y, shave = scale"

# Methods that need no checkpoint, and the scales they are scored at by default.
METHODS = ("bicubic",)
METHOD_SCALES = (2, 3, 4)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--data-dir",
        required=True,
        help="folder of sets in EDSR layout: <DIR>/<Set>/HR, <DIR>/<Set>/LR_bicubic/X<s>",
    )
    parser.add_argument(
        "--datasets",
        default="Set5,Set14,B100,Urban100",
        help="comma-separated set (folder) names (default: %(default)s)",
    )
    parser.add_argument(
        "--scales",
        default=None,
        help="comma-separated scales (default: the model's scales; 2,3,4 with --method)",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="an exported model or training workdir (what load_model takes)")
    what.add_argument("--method", choices=METHODS, help="a classical baseline instead of a model")
    parser.add_argument("--self-ensemble", action="store_true", help="x8 self-ensemble (EDSR+/MDSR+)")
    parser.add_argument(
        "--tile", type=int, default=None, help="run the model on TILE x TILE LR tiles (bounded memory; exact)"
    )
    parser.add_argument(
        "--protocol",
        choices=("auto", "benchmark", "div2k"),
        default="auto",
        help="auto: DIV2K* sets on RGB with shave scale+6, others on Y with shave scale",
    )
    parser.add_argument(
        "--boundary",
        choices=("replicate", "mirror"),
        default="replicate",
        help="edge handling when LR files are missing and made here (default: MATLAB's)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="score the readable images and list unreadable files (table and JSON) instead of failing",
    )
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _int_list(text: str, what: str) -> list[int]:
    from edsr_jax.errors import UserError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"--{what} needs at least one positive integer, got {text!r}")
    return values


def _upscaler_factory(args, scales):
    """``(scale -> upscale_fn, scales, description)`` for --method or --checkpoint."""
    from edsr_jax import evaluate
    from edsr_jax.errors import UserError

    if args.method == "bicubic":
        if args.self_ensemble or args.tile:
            raise UserError("--self-ensemble and --tile apply to models, not to --method bicubic")
        return (
            (lambda s: evaluate.bicubic(s)),
            scales or list(METHOD_SCALES),
            "bicubic (MATLAB imresize of the LR)",
        )

    from edsr_jax import inference
    from edsr_jax.checkpoint import exported

    model, variables = exported.load_model(args.checkpoint)
    scales = [
        inference.check_scale(model, s, f"checkpoint {args.checkpoint}") for s in scales or model.scales
    ]

    def factory(s):
        return inference.make_upscaler(model, variables, s, self_ensemble=args.self_ensemble, tile=args.tile)

    return factory, scales, f"checkpoint {args.checkpoint}"


def run(args) -> int:
    from edsr_jax import atomic, evaluate
    from edsr_jax.errors import UserError
    from edsr_jax.imaging import metrics

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if not datasets:
        raise UserError(f"--datasets needs at least one set name, got {args.datasets!r}")
    scales = None if args.scales is None else _int_list(args.scales, "scales")
    if not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir {args.data_dir} is not a folder")
    if args.json_path and not os.path.isdir(os.path.dirname(os.path.abspath(args.json_path))):
        raise UserError(f"the folder of --json {args.json_path} does not exist")
    factory, scales, method = _upscaler_factory(args, scales)
    protocol = None if args.protocol == "auto" else metrics.get_protocol(args.protocol)

    bar = None

    def progress_factory(total):
        nonlocal bar
        if args.no_progress:
            return None
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", desc="eval", file=sys.stderr, dynamic_ncols=True)
        return bar.update

    try:
        results = evaluate.evaluate_sets(
            factory,
            args.data_dir,
            datasets,
            scales,
            protocol=protocol,
            boundary=args.boundary,
            progress_factory=progress_factory,
            skip_bad=args.skip_bad,
        )
    finally:
        if bar is not None:
            bar.close()
    print(f"method: {method}; self-ensemble: {'yes' if args.self_ensemble else 'no'}")
    print(evaluate.format_table(results))
    if args.json_path:
        used = sorted({r["protocol"] for r in results})
        payload = {
            "method": method,
            "self_ensemble": bool(args.self_ensemble),
            "tile": args.tile,
            "protocol": {name: metrics.get_protocol(name).describe() for name in used},
            "skip_bad": bool(args.skip_bad),
            "results": results,
        }
        atomic.write_json(args.json_path, payload)
        print(f"wrote {args.json_path}")
    return 0
