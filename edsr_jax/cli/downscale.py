"""``edsr-jax downscale``: LR images exactly as MATLAB's ``imresize(hr, 1/s, 'bicubic')`` makes them.

A file or folder in, EDSR names out (``<name>x<s>.png``), modcropped unless ``--no-modcrop``;
e.g. ``edsr-jax downscale --scale 4 photos/HR photos/LR_bicubic/X4``.
"""

from __future__ import annotations

import os

HELP = "make MATLAB-exact bicubic LR images (<name>x<s>.png) from a file or a folder"


def add_arguments(parser) -> None:
    parser.add_argument("--scale", type=int, required=True, help="integer downscaling factor, e.g. 2, 3, 4")
    parser.add_argument("input", help="an HR image file or a folder of them")
    parser.add_argument("output", help="output folder (created), or an output file name for a single image")
    parser.add_argument(
        "--boundary",
        choices=("replicate", "mirror"),
        default="replicate",
        help="replicate: MATLAB (default); mirror: the EDSR benchmark package's LR copies",
    )
    parser.add_argument(
        "--no-modcrop",
        action="store_true",
        help="do not crop to a multiple of the scale (LR size is then ceil(H/s) x ceil(W/s))",
    )
    parser.add_argument("--force", action="store_true", help="replace output files that exist")


def lr_name(path: str, scale: int) -> str:
    """EDSR's LR file name for an HR file: ``<stem>x<scale>.png``."""
    return f"{os.path.splitext(os.path.basename(path))[0]}x{scale}.png"


def run(args) -> int:
    from edsr_jax import overwrite
    from edsr_jax.errors import UserError
    from edsr_jax.imaging import files, resize

    if args.scale < 1:
        raise UserError(f"--scale must be a positive integer, got {args.scale}")
    jobs = files.plan_outputs(args.input, args.output, name=lambda path: lr_name(path, args.scale))
    overwrite.check_files([dst for _, dst in jobs], force=args.force, inputs=[src for src, _ in jobs])
    for _, dst in jobs:
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    for src, dst in jobs:
        hr = files.read_image(src)
        lr = resize.downscale(
            hr, args.scale, boundary=args.boundary, crop=not args.no_modcrop, name=f"image {src}"
        )
        files.write_image(dst, lr)
    print(
        f"wrote {len(jobs)} image{'s' if len(jobs) != 1 else ''} (x1/{args.scale}, {args.boundary}) "
        f"to {os.path.dirname(os.path.abspath(jobs[0][1]))}"
    )
    return 0
