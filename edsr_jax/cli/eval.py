"""``edsr-jax eval``: PSNR/SSIM on benchmark sets with the paper's protocol (``docs/protocol.md``).

E.g. ``edsr-jax eval --data-dir data/benchmarks --datasets Set5 --scales 2 --checkpoint
models/edsr_x2``; ``--method bicubic``, ``--steps all --curve F``, ``--report F.html`` and
``--from-logs``: ``docs/evaluation.md``.
"""

from __future__ import annotations

import os
import sys

from edsr_jax.cli import model_flags

HELP = "evaluate a model (or bicubic) on benchmark sets: PSNR/SSIM on Y, shave = scale"

# Methods that need no checkpoint, and the scales they are scored at by default.
METHODS = ("bicubic",)
METHOD_SCALES = (2, 3, 4)


def add_arguments(parser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
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
    model_flags.add_model_flag(what)
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
    model_flags.add_dtype_flag(parser)
    model_flags.add_weights_flag(parser)
    sweep = parser.add_argument_group("runs and outputs")
    sweep.add_argument(
        "--steps",
        default=None,
        help="a training workdir's checkpoints to score: all, best, latest or N,M,... (default: latest)",
    )
    sweep.add_argument(
        "--curve",
        default=None,
        metavar="PREFIX",
        help="write PSNR per step as PREFIX.json, PREFIX.csv and PREFIX.png (with --steps or --from-logs)",
    )
    sweep.add_argument(
        "--from-logs",
        action="store_true",
        help="plot training's own validation history (TensorBoard events) instead of scoring",
    )
    sweep.add_argument(
        "--save-results",
        default=None,
        metavar="DIR",
        help="write every scored SR image (DIR/<set>/x<s>/<name>_x<s>_SR.png) and per-image CSVs",
    )
    sweep.add_argument(
        "--report", default=None, metavar="FILE.html", help="write a self-contained HTML report"
    )
    sweep.add_argument(
        "--compare",
        default=None,
        metavar="CHECKPOINT",
        help="a second model (a checkpoint or a published model's name) scored beside the first",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--force", action="store_true", help="replace the output files an earlier evaluation wrote"
    )


def _int_list(text: str, what: str) -> list[int]:
    from edsr_jax.errors import UserError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"--{what} needs at least one positive integer, got {text!r}")
    return values


def _model(checkpoint: str, which, scales, dtype: str, weights: str = "auto"):
    """``(model, variables, scales)`` of a checkpoint (``which``: latest, best or a step)."""
    from edsr_jax import inference
    from edsr_jax.checkpoint import exported

    dtype = model_flags.dtype_of(dtype)
    model, variables = exported.load_model(checkpoint, which=which, dtype=dtype, weights=weights)
    scales = [inference.check_scale(model, s, f"checkpoint {checkpoint}") for s in scales or model.scales]
    return model, variables, scales


def _upscaler_per_scale(model, variables, args):
    from edsr_jax import inference

    return lambda s: inference.make_upscaler(
        model, variables, s, self_ensemble=args.self_ensemble, tile=args.tile
    )


def _check(args):
    from edsr_jax.errors import UserError
    from edsr_jax.extras import require

    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if not datasets:
        raise UserError(f"--datasets needs at least one set name, got {args.datasets!r}")
    if args.from_logs:
        if not args.checkpoint or not args.curve:
            raise UserError("--from-logs needs --checkpoint WORKDIR and --curve PREFIX")
        _check_outputs(args, datasets)
        return datasets
    if args.data_dir is None:
        raise UserError("--data-dir is required (the folder of the benchmark sets)")
    if not os.path.isdir(args.data_dir):
        raise UserError(f"--data-dir {args.data_dir} is not a folder")
    for flag, path in (("--json", args.json_path), ("--report", args.report), ("--curve", args.curve)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UserError(f"the folder of {flag} {path} does not exist")
    _check_outputs(args, datasets)
    if args.method:
        for flag, value in (
            ("--self-ensemble", args.self_ensemble),
            ("--tile", args.tile),
            ("--steps", args.steps),
            ("--compare", args.compare),
            ("--dtype", args.dtype != "float32"),
            ("--weights", args.weights != "auto"),
        ):
            if value:
                raise UserError(f"{flag} applies to models, not to --method {args.method}")
    if args.curve and not args.steps:
        raise UserError("--curve plots several steps: add --steps all (or N,M,...) or --from-logs")
    if args.curve:  # (before any scoring: the plot is drawn last)
        require("matplotlib", "--curve's plot")
    if args.compare and not os.path.exists(args.compare):  # (read after the first model is scored)
        from edsr_jax.interop import pretrained

        if not pretrained.is_model_name(args.compare):
            raise UserError(f"no model at --compare {args.compare}: the path does not exist")
    return datasets


def _check_outputs(args, datasets) -> None:
    """Every output checked before scoring starts (:mod:`edsr_jax.overwrite`)."""
    from edsr_jax.apps import eval_outputs, sweep
    from edsr_jax.data import benchmarks

    outputs = [p for p in (args.json_path, args.report) if p]
    outputs += sweep.curve_paths(args.curve) if args.curve else []
    sets = [os.path.join(args.data_dir or "", d) for d in datasets] if args.data_dir else []
    images = (benchmarks.HR_DIR, benchmarks.LR_DIR, benchmarks.PAIRED_LR_DIR)
    inputs = [os.path.join(s, sub) for s in sets for sub in images]  # (model files: overwrite.owner_of)
    eval_outputs.check_outputs(outputs, args.save_results, datasets, force=args.force, inputs=inputs)


def run(args) -> int:
    from edsr_jax import atomic, compile_cache, evaluate
    from edsr_jax.apps import eval_outputs, sweep
    from edsr_jax.imaging import metrics

    datasets = _check(args)
    if args.from_logs:
        rows = sweep.curve_from_logs(args.checkpoint)
        for path in sweep.write_curve(args.curve, rows, f"validation history of {args.checkpoint}"):
            print(f"wrote {path}")
        return 0
    compile_cache.enable()  # before the first compile: a rerun loads the programs from disk
    scales = None if args.scales is None else _int_list(args.scales, "scales")
    named = args.model
    if named:
        args.checkpoint = model_flags.checkpoint_path(args)
    if args.compare:
        args.compare = model_flags.checkpoint_or_model(args.compare)
    protocol = None if args.protocol == "auto" else metrics.get_protocol(args.protocol)
    saver = eval_outputs.ResultSaver(args.save_results) if args.save_results else None
    report = eval_outputs.ReportCollector(protocol=protocol) if args.report else None
    bar = None

    def progress_factory(total):
        nonlocal bar
        if args.no_progress:
            return None
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", desc="eval", file=sys.stderr, dynamic_ncols=True)
        return bar.update

    def score(super_resolve_for_scale, scales, outputs):
        def on_output(*a):
            for hook in outputs:
                hook(*a)

        try:
            return evaluate.evaluate_sets(
                super_resolve_for_scale,
                args.data_dir,
                datasets,
                scales,
                protocol=protocol,
                boundary=args.boundary,
                progress_factory=progress_factory,
                skip_bad=args.skip_bad,
                on_output=on_output if outputs else None,
            )
        finally:
            if bar is not None:
                bar.close()

    if args.method:
        method, scales = "bicubic (MATLAB imresize of the LR)", scales or list(METHOD_SCALES)
        results = score(lambda s: evaluate.bicubic(s), scales, [h for h in (saver, report) if h])
        runs = [(None, results)]
    else:
        method = f"model {named} ({args.checkpoint})" if named else f"checkpoint {args.checkpoint}"
        steps = sweep.resolve_steps(args.checkpoint, args.steps) if args.steps else ["latest"]
        runs = []
        for i, which in enumerate(steps):
            step = sweep.step_number(args.checkpoint, which)
            model, variables, used = _model(
                args.checkpoint, which if step is None else step, scales, args.dtype, args.weights
            )
            last = i == len(steps) - 1  # (images and the report: of the last step scored)
            outputs = [h for h in (saver, report) if h] if last else []
            runs.append((step, score(_upscaler_per_scale(model, variables, args), used, outputs)))
            scales = used
    compared = None
    if args.compare:
        model, variables, used = _model(args.compare, "latest", scales, args.dtype, args.weights)
        compared = score(_upscaler_per_scale(model, variables, args), used, [])
    print(f"method: {method}; self-ensemble: {'yes' if args.self_ensemble else 'no'}; dtype {args.dtype}")
    for step, results in runs:
        if step is not None and len(runs) > 1:
            print(f"step {step}:")
        print(evaluate.format_table(results))
    if compared:
        print(f"compared with {args.compare}:")
        print(evaluate.format_table(compared))
    step, results = runs[-1]
    if args.steps and not args.method:  # (a sweep of one kept step still gets its curve files)
        rows = sweep.curve_rows(runs)
        for (dataset, scale), top in sorted(sweep.best_steps(rows).items()):
            print(f"best step for {dataset} x{scale}: {top['step']} ({top['psnr']:.2f} dB)")
        if args.curve:
            for path in sweep.write_curve(args.curve, rows, method):
                print(f"wrote {path}")
    if saver:
        saver.write_tables(results)
        print(f"wrote the SR images and per-image CSVs to {args.save_results}")
    if report:
        title = f"{method}" + (f", step {step}" if step is not None else "")
        eval_outputs.write_report(
            args.report,
            results,
            report,
            title=title,
            compare=compared,
            compare_name=os.path.basename(os.path.normpath(args.compare or "")),
        )
        print(f"wrote {args.report}")
    if args.json_path:
        used = sorted({r["protocol"] for _, rs in runs for r in rs})
        payload = {
            "method": method,
            "self_ensemble": bool(args.self_ensemble),
            "tile": args.tile,
            "dtype": args.dtype,
            "weights": args.weights,
            "protocol": {name: metrics.get_protocol(name).describe() for name in used},
            "skip_bad": bool(args.skip_bad),
            "results": results,
            "steps": [{"step": s, "results": rs} for s, rs in runs] if len(runs) > 1 else None,
            "compare": {"checkpoint": args.compare, "results": compared} if compared else None,
        }
        atomic.write_json(args.json_path, payload)
        print(f"wrote {args.json_path}")
    return 0
