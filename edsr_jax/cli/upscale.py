"""``edsr-jax upscale``: super-resolve your own image files or folders with a trained model.

E.g. ``edsr-jax upscale --model edsr_baseline_x4 photo.jpg photo_x4.png``. A folder run reports a
failing image and goes on (exit status 2); existing outputs are replaced only with ``--force``,
all checked before the model loads. Modes: :mod:`edsr_jax.apps.upscale_files`.
"""

from __future__ import annotations

import sys

from edsr_jax.cli import model_flags

HELP = "upscale image files or a folder with a trained model (PNG, JPEG, BMP, TIFF, WebP)"
EXIT_FAILED = 2


def add_arguments(parser) -> None:
    parser.add_argument("input", metavar="INPUT", help="an image file or a folder of images")
    parser.add_argument(
        "output",
        metavar="OUTPUT",
        help="output file (format from its extension) or folder (for a folder INPUT)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="an exported model or training workdir (what load_model takes)")
    model_flags.add_model_flag(source)
    parser.add_argument(
        "--scale", type=int, default=None, help="upscaling factor (default: the model's, if it has only one)"
    )
    parser.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the 8 flips/transposes (EDSR+: slightly better, 8x slower)",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="LR tile size for every image (exact, bounded memory); 0: never tile; "
        "default: tiles of 256 for images above 512x512 LR pixels",
    )
    model_flags.add_dtype_flag(parser)
    model_flags.add_weights_flag(parser)
    parser.add_argument(
        "--max-memory-mb",
        type=int,
        default=2048,
        help="outputs larger than this are built in a memory-mapped file beside the output "
        "instead of in memory (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for folders")
    parser.add_argument("--force", action="store_true", help="replace output files that exist")


def run(args) -> int:
    from edsr_jax import overwrite
    from edsr_jax.apps import upscale_files as upscale
    from edsr_jax.cli import user_message
    from edsr_jax.errors import UserError
    from edsr_jax.imaging import files

    if args.tile is not None and args.tile < 0:
        raise UserError(f"--tile must be 0 (never tile) or a positive size, got {args.tile}")
    jobs = files.plan_outputs(args.input, args.output)
    overwrite.check_files([dst for _, dst in jobs], force=args.force, inputs=[src for src, _ in jobs])
    import jax

    from edsr_jax import compile_cache

    compile_cache.enable()  # before the first compile: a rerun loads the programs from disk
    dtype = model_flags.dtype_of(args.dtype)
    model, variables, scale = upscale.load_for_upscaling(
        model_flags.checkpoint_path(args), args.scale, dtype=dtype, weights=args.weights
    )
    if args.max_memory_mb < 1:
        raise UserError(f"--max-memory-mb must be at least 1, got {args.max_memory_mb}")
    memory = args.max_memory_mb * 2**20
    upscaler_cache = upscale.UpscalerCache(
        model, variables, scale, self_ensemble=args.self_ensemble, tile=args.tile, devices=jax.local_devices()
    )
    if len(jobs) == 1 and jobs[0][0] == args.input:
        src, dst = jobs[0]
        shape = upscale.upscale_file(src, dst, upscaler_cache, scale, in_memory_bytes=memory)
        print(f"wrote {dst} ({shape[1]}x{shape[0]}, x{scale})")
        return 0

    from tqdm import tqdm

    failures = []
    for src, dst in tqdm(
        jobs, desc="upscaling", unit="img", file=sys.stderr, disable=args.no_progress, dynamic_ncols=True
    ):
        try:
            upscale.upscale_file(src, dst, upscaler_cache, scale, in_memory_bytes=memory)
        except Exception as e:  # a bad file is reported and the folder goes on; a bug stops it
            message = user_message(e)
            if message is None or args.debug:
                raise
            failures.append(message)
    for message in failures:
        print(f"edsr-jax upscale: error: {message}", file=sys.stderr)
    print(f"wrote {len(jobs) - len(failures)} of {len(jobs)} images to {args.output} (x{scale})")
    if failures:
        print(
            f"edsr-jax upscale: {len(failures)} of {len(jobs)} images failed (listed above)", file=sys.stderr
        )
        return EXIT_FAILED
    return 0
