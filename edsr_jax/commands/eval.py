"""``edsr-jax eval``: PSNR/SSIM on benchmark sets with the paper's protocol (REFERENCE section 4).

Examples::

    edsr-jax eval --data-dir data/benchmarks --datasets Set5,Set14 --scales 2,3,4 --method bicubic
    edsr-jax eval --data-dir data/benchmarks --datasets Set5 --scales 2 --checkpoint models/edsr_x2
"""

from __future__ import annotations

import json
import math
import os
import sys

HELP = "evaluate a model (or bicubic) on benchmark sets: PSNR/SSIM on Y, shave = scale"

# Methods that need no checkpoint.
METHODS = ("bicubic",)


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", required=True,
                        help="folder of sets in EDSR layout: <DIR>/<Set>/HR, <DIR>/<Set>/LR_bicubic/X<s>")
    parser.add_argument("--datasets", default="Set5,Set14,B100,Urban100",
                        help="comma-separated set (folder) names (default: %(default)s)")
    parser.add_argument("--scales", default="2,3,4", help="comma-separated scales (default: %(default)s)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="an exported model or training workdir (what load_model takes)")
    what.add_argument("--method", choices=METHODS, help="a classical baseline instead of a model")
    parser.add_argument("--self-ensemble", action="store_true", help="x8 self-ensemble (EDSR+/MDSR+)")
    parser.add_argument("--tile", type=int, default=None,
                        help="run the model on TILE x TILE LR tiles (bounded memory; exact)")
    parser.add_argument("--protocol", choices=("auto", "benchmark", "div2k"), default="auto",
                        help="auto: DIV2K* sets on RGB with shave scale+6, others on Y with shave scale")
    parser.add_argument("--boundary", choices=("replicate", "mirror"), default="replicate",
                        help="edge handling when LR files are missing and made here (default: MATLAB's)")
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
    """``scale -> upscale_fn`` for --method or --checkpoint, and a description of the method."""
    from edsr_jax import evaluate
    from edsr_jax.errors import UserError

    if args.method == "bicubic":
        if args.self_ensemble or args.tile:
            raise UserError("--self-ensemble and --tile apply to models, not to --method bicubic")
        return (lambda s: evaluate.bicubic(s)), "bicubic (MATLAB imresize of the LR)"

    import edsr_jax
    from edsr_jax import inference, models

    model, variables = edsr_jax.load_model(args.checkpoint)
    available = models.model_scales(model)
    missing = [s for s in scales if s not in available]
    if missing:
        have = ", ".join(f"x{s}" for s in available)
        wanted = ", ".join(f"x{s}" for s in missing)
        raise UserError(f"checkpoint {args.checkpoint} upscales by {have} only; requested {wanted} "
                        f"(pass --scales {','.join(map(str, available))})")

    def factory(s):
        return inference.make_upscaler(model, variables, s, self_ensemble=args.self_ensemble, tile=args.tile)

    return factory, f"checkpoint {args.checkpoint}"


def run(args) -> int:
    import edsr_jax  # noqa: F401  (XLA defaults before JAX starts)
    from edsr_jax import evaluate, metrics
    from edsr_jax.errors import UserError

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if not datasets:
        raise UserError(f"--datasets needs at least one set name, got {args.datasets!r}")
    scales = _int_list(args.scales, "scales")
    if not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir {args.data_dir} is not a folder")
    if args.json_path and not os.path.isdir(os.path.dirname(os.path.abspath(args.json_path))):
        raise UserError(f"the folder of --json {args.json_path} does not exist")
    factory, method = _upscaler_factory(args, scales)
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
        results = evaluate.evaluate_sets(factory, args.data_dir, datasets, scales, protocol=protocol,
                                         boundary=args.boundary, progress_factory=progress_factory)
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
            "results": results,
        }
        _write_json(args.json_path, payload)
        print(f"wrote {args.json_path}")
    return 0


def _finite_or_null(value):
    """``value`` with every non-finite float replaced by ``None`` (strict JSON has no Infinity)."""
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: str, payload: dict) -> None:
    """Write strict JSON atomically (temporary file in the same folder, then rename).

    A PSNR that is infinite (an output identical to its HR image) is written as ``null``.
    """
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_finite_or_null(payload), f, indent=2, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
