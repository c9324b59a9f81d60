"""``edsr-jax train --config configs/X.py --workdir W [--config.field=value ...]``.

Rerunning the same command on the same workdir resumes from its latest complete checkpoint.
Fields of the config are overridden with ``--config.a.b=value`` (or ``--config.a.b value``);
the value is converted to the type of the field it replaces (tuples as ``2,3,4`` or ``(2, 3, 4)``).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import sys

from edsr_jax.errors import UserError

HELP = "train EDSR/MDSR from a config file (rerun on the same workdir to resume)"
# Prefix of config overrides on the command line.
OVERRIDE_PREFIX = "--config."
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="config file defining get_config() (configs/*.py)")
    parser.add_argument("--workdir", required=True, help="directory for checkpoints, logs and model.json")
    group = parser.add_argument_group(
        "multi-host (one process per host or per accelerator; every process runs the same command)",
        "Without these flags the settings come from the environment when a launcher sets them "
        "(SLURM srun, Open MPI, GKE TPU, JAX_COORDINATOR_ADDRESS); EDSR_JAX_DISTRIBUTED=0 turns that off.",
    )
    group.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() "
        "(needed on Cloud TPU VM slices, whose settings JAX reads from the TPU metadata)",
    )
    group.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0 (reachable by all)")
    group.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    group.add_argument("--local-devices", metavar="IDS", help="local accelerator ids this process uses, "
                       "e.g. 0,1 (default: all it sees; same as JAX_LOCAL_DEVICE_IDS)")  # fmt: skip
    parser.epilog = (
        "Override any config field with --config.FIELD=VALUE, e.g. --config.batch_size=32 "
        "--config.model.num_blocks=32 --config.scales=2,3,4"
    )
    parser.set_defaults(overrides=[])
    # argparse cannot declare a family of options (--config.*): take them from what it leaves over.
    parse_known_args = parser.parse_known_args

    def parse_with_overrides(args=None, namespace=None):
        namespace, rest = parse_known_args(args, namespace)
        taken = _override_items(rest)
        namespace.overrides = list(namespace.overrides) + taken
        return namespace, rest[len(taken) :]

    parser.parse_known_args = parse_with_overrides


def _override_items(rest: list[str]) -> list[str]:
    """The leading ``--config.K=V`` / ``--config.K V`` items of argparse's left-overs."""
    i = 0
    while i < len(rest) and rest[i].startswith(OVERRIDE_PREFIX):
        i += 1 if "=" in rest[i] or i + 1 == len(rest) else 2
    return rest[:i]


def parse_device_ids(text: str | None) -> list[int] | None:
    """``"0,1"`` -> ``[0, 1]``; None stays None.

    Raises:
      UserError: not a comma-separated list of non-negative integers.
    """
    if text is None:
        return None
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        ids = []
    if not ids or min(ids) < 0:
        raise UserError(f"--local-devices must be comma-separated device ids such as 0,1, got {text!r}")
    return ids


def load_config(path: str):
    """Imports ``path`` and returns its ``get_config()`` (``configs`` is importable from it).

    Raises:
      UserError: the file is missing or has no ``get_config``.
    """
    if not os.path.isfile(path):
        raise UserError(f"config file {path} does not exist")
    path = os.path.abspath(path)
    parent = os.path.dirname(os.path.dirname(path))  # so that `from configs import default` works
    if parent not in sys.path:
        sys.path.insert(0, parent)
    spec = importlib.util.spec_from_file_location(f"edsr_jax_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {path} defines no get_config()")
    return module.get_config()


def split_overrides(items: list[str]) -> list[tuple[str, str]]:
    """``["--config.a=1", "--config.b", "2"]`` -> ``[("a", "1"), ("b", "2")]``.

    Raises:
      UserError: an item is not a ``--config.`` override or has no value.
    """
    pairs, i = [], 0
    while i < len(items):
        item = items[i]
        if not item.startswith(OVERRIDE_PREFIX):
            raise UserError(f"unexpected argument {item!r}; overrides look like --config.batch_size=32")
        key = item[len(OVERRIDE_PREFIX) :]
        if "=" in key:
            key, value = key.split("=", 1)
        elif i + 1 < len(items):
            i += 1
            value = items[i]
        else:
            raise UserError(f"{item} needs a value (e.g. {item}=VALUE)")
        pairs.append((key, value))
        i += 1
    return pairs


def convert_value(key: str, text: str, current):
    """Parses ``text`` as the type of the field's ``current`` value.

    Raises:
      UserError: the text does not parse as that type.
    """
    try:
        if isinstance(current, bool):
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError(text)
        if isinstance(current, int):
            return int(text.replace("_", ""))
        if isinstance(current, float):
            return float(text)
        if isinstance(current, str):
            return text
        if isinstance(current, tuple | list):
            value = ast.literal_eval(text if text.strip().startswith(("(", "[")) else f"({text},)")
            value = tuple(value) if isinstance(value, tuple | list) else (value,)
            kinds = {type(v) for v in current}
            if len(kinds) == 1 and current:
                value = tuple(convert_value(key, str(v), current[0]) for v in value)
            return value
        if current is None:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
    except (ValueError, SyntaxError):
        pass
    raise UserError(f"--config.{key}={text!r}: expected a {type(current).__name__} like {current!r}")


def apply_overrides(config, pairs: list[tuple[str, str]]):
    """Sets each ``(dotted.key, text)`` on ``config``, converted to the field's type.

    Raises:
      UserError: an unknown field (with the closest known names) or an unparsable value.
    """
    for key, text in pairs:
        node, parts = config, key.split(".")
        for depth, part in enumerate(parts):
            known = list(node.keys()) if hasattr(node, "keys") else []
            if part not in known:
                where = ".".join(parts[:depth]) or "config"
                close = difflib.get_close_matches(part, known, n=3)
                hint = (
                    f"; did you mean {', '.join(close)}?"
                    if close
                    else f"; {where} has {', '.join(sorted(known))}"
                )
                raise UserError(f"unknown config field --config.{key} ({part!r} not in {where}){hint}")
            if depth < len(parts) - 1:
                node = node[part]
        current = node[parts[-1]]
        if hasattr(current, "keys"):
            raise UserError(
                f"--config.{key} is a group of fields, set one of {', '.join(sorted(current.keys()))}"
            )
        node[parts[-1]] = convert_value(key, text, current)
    return config


def run(args) -> int:
    import edsr_jax  # noqa: F401  (XLA CPU defaults before the backend starts)

    config = apply_overrides(load_config(args.config), split_overrides(args.overrides))
    from edsr_jax import sharding, train

    sharding.maybe_initialize_distributed(
        bool(getattr(args, "distributed", False) or config.distributed),
        coordinator_address=getattr(args, "coordinator", None),
        num_processes=getattr(args, "num_processes", None),
        process_id=getattr(args, "process_id", None),
        local_device_ids=parse_device_ids(getattr(args, "local_devices", None)),
    )

    state = train.train_and_evaluate(config, args.workdir)
    import jax

    if jax.process_index() == 0:
        print(f"done: step {int(state.step)} in {train.checkpointing.absolute(args.workdir)}")
    return 0
