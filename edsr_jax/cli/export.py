"""``edsr-jax export --checkpoint DIR --format F OUT``: a model in a deployment format.

E.g. ``--format onnx edsr_x2.onnx``. Formats and their inputs and outputs:
:mod:`edsr_jax.interop.export`.
"""

from __future__ import annotations

import os
import time

from edsr_jax.cli import model_flags
from edsr_jax.interop.export import FORMATS

HELP = "export a model to StableHLO, SavedModel, TFLite, ONNX, PyTorch or safetensors"


def add_arguments(parser) -> None:
    parser.add_argument("output", metavar="OUT", help="the file (or SavedModel folder) to write")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="an exported model or training workdir")
    model_flags.add_model_flag(source)
    parser.add_argument("--format", required=True, help=f"the format to write: {', '.join(FORMATS)}")
    parser.add_argument(
        "--which", default="latest", help="for a training workdir: latest, best or a step number"
    )
    parser.add_argument(
        "--fp16", action="store_true", help="onnx only: float16 weights and compute, float32 I/O"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace OUT if it exists (a SavedModel folder only when an earlier export wrote it)",
    )
    model_flags.add_weights_flag(parser)


def run(args) -> int:
    from edsr_jax.checkpoint import exported
    from edsr_jax.interop import export

    which = int(args.which) if args.which.isdigit() else args.which
    path = model_flags.checkpoint_path(args)
    model, variables = exported.load_model(path, which=which, weights=args.weights)
    start = time.perf_counter()
    paths = export.export_model(model, variables, args.output, args.format, force=args.force, fp16=args.fp16)
    seconds = time.perf_counter() - start
    for path in paths:
        size = (
            sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)
            if os.path.isdir(path)
            else os.path.getsize(path)
        )
        print(f"wrote {path} ({size / 2**20:.1f} MB)")
    print(f"{args.format}{' fp16' if args.fp16 else ''} export in {seconds:.1f} s")
    return 0
