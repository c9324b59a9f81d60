"""The ``edsr-jax`` command line: one module per subcommand (``HELP``, ``add_arguments``, ``run``).

Heavy imports stay inside ``run`` so ``--help`` is instant. The command line is the one place
that sets up its process (late Orbax results, the compilation cache). Exit status: 0; 2 for a
user's mistake, printed as one line (``--debug``: the traceback); 130 on Ctrl-C; a bug raises (1).
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "info": "info",
    "eval": "eval",
    "downscale": "downscale",
    "train": "train",
    "convert-torch": "convert_torch",
    "models": "models",
    "export": "export",
    "demo": "demo",
    "upscale": "upscale",
}

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def user_message(error: BaseException) -> str | None:
    """The one-line message of a user's mistake (a UserError, or an OSError naming a path), else None."""
    from edsr_jax.errors import UserError

    if isinstance(error, UserError) or (isinstance(error, OSError) and error.filename is not None):
        return " ".join(str(error).split()) or type(error).__name__
    return None


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
        module = importlib.import_module(f"edsr_jax.cli.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edsr-jax`` console script."""
    args = build_parser().parse_args(argv)
    from edsr_jax.checkpoint import late_results

    late_results.ignore_results_for_closed_loops()
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("edsr-jax: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        message = user_message(e)
        if message is None or args.debug:
            raise
        print(f"edsr-jax {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
