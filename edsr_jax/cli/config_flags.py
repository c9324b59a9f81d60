"""``--config FILE|NAME`` and ``--config.field=value`` overrides (the train command's config flags).

``NAME`` is a module of ``edsr_jax.configs``; overrides take the type of the field they replace
(``--config.scales=2,3,4`` -> ``(2, 3, 4)``); an unknown field is an error naming the closest.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import pkgutil
import sys

from edsr_jax.errors import UserError

# Prefix of config overrides on the command line.
OVERRIDE_PREFIX = "--config."
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def add_config_flags(parser) -> None:
    """Adds ``--config`` and teaches ``parser`` to collect ``--config.K=V`` into ``args.overrides``."""
    parser.add_argument(
        "--config",
        required=True,
        help="a config name (edsr_jax.configs: "
        + ", ".join(config_names())
        + ") or a file defining get_config()",
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


def config_names() -> list[str]:
    """The configs that ship in the package (``edsr_jax.configs``)."""
    from edsr_jax import configs

    return sorted(m.name for m in pkgutil.iter_modules(configs.__path__))


def load_config(name_or_path: str):
    """``get_config()`` of a packaged config (by name) or of a Python file; UserError otherwise."""
    if name_or_path in config_names():
        return importlib.import_module(f"edsr_jax.configs.{name_or_path}").get_config()
    if not os.path.isfile(name_or_path):
        close = difflib.get_close_matches(name_or_path, config_names(), n=3)
        hint = (
            f"; did you mean {', '.join(close)}?"
            if close
            else f"; packaged configs: {', '.join(config_names())}"
        )
        raise UserError(f"config {name_or_path} is neither a packaged config nor a file{hint}")
    path = os.path.abspath(name_or_path)
    spec = importlib.util.spec_from_file_location(f"edsr_jax_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"config file {path} defines no get_config()")
    return module.get_config()


def split_overrides(items: list[str]) -> list[tuple[str, str]]:
    """``["--config.a=1", "--config.b", "2"]`` -> ``[("a", "1"), ("b", "2")]``; UserError on others."""
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
    """Parses ``text`` as the type of the field's ``current`` value; UserError if it does not parse."""
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
    """Sets each ``(dotted.key, text)`` on ``config`` as its field's type; UserError naming close fields."""
    from edsr_jax import config_checks

    for key, text in pairs:
        if key in config_checks.RENAMED:  # an old field name: set the new one
            print(f"warning: {config_checks.renamed_message(key, text)}", file=sys.stderr)
            new, convert = config_checks.RENAMED[key]
            key, text = new, str(convert(text))
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
