"""The ``edsr-jax`` command line: one subcommand per module in ``edsr_jax.commands``.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and keeps heavy imports (JAX, TensorFlow, Orbax) inside ``run`` so that ``--help`` is instant.
Problems with the user's input (``UserError``, ``ValueError``, ``OSError``) print as one line and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module under edsr_jax.commands
COMMANDS = {
    "info": "info",
    "eval": "eval",
    "downscale": "downscale",
    "train": "train",
    "convert-torch": "convert_torch",
    "demo": "demo",
    "upscale": "upscale",
}

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="edsr-jax", description="EDSR/MDSR super-resolution in JAX: train, evaluate, upscale."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"edsr_jax.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edsr-jax`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("edsr-jax: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # UserError is a ValueError
        if args.debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"edsr-jax {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
