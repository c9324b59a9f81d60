"""``edsr-jax demo``: train a small EDSR x2 on CPU in minutes and compare it with bicubic.

``--steps N`` fixes the length (the same result anywhere); ``--data-dir`` with ``Set5`` scores it too.
"""

from __future__ import annotations

HELP = "train a small EDSR x2 on scikit-image's photos (CPU, minutes), compare with bicubic"


def add_arguments(parser) -> None:
    from edsr_jax.apps import demo

    parser.add_argument(
        "--workdir",
        default="edsr_demo",
        help="folder for the checkpoint, logs, figure and demo.json (default: %(default)s)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="benchmark folder in EDSR layout holding Set5 (DIR/Set5/HR) to score as well",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train exactly this many steps (reproducible); default: as many as fit in --seconds",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=demo.DEFAULT_SECONDS,
        help="time budget in seconds from the start to the end of training, used to plan "
        "the steps; evaluation adds under a minute (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    from edsr_jax import compile_cache
    from edsr_jax.apps import demo

    compile_cache.enable()  # before the demo's first compile (it times a step before training)
    demo.run_demo(
        args.workdir,
        data_dir=args.data_dir,
        steps=args.steps,
        seconds=args.seconds,
        progress=not args.no_progress,
    )
    return 0
