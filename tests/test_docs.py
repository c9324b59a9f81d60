"""The README and the docs pages cannot rot: their command examples parse (and a few cheap ones run),
the README's Python examples run, and docs/architecture.md names every module of the package.

The docs site itself is built by ``.ci/run`` (``sphinx-build -W``: about a minute, too slow for
this file).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from edsr_jax.cli import build_parser, config_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
# The README is the front door: it links to the docs instead of growing.
README_MAX_LINES = 250


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def code_blocks(text: str, languages: tuple[str, ...]) -> list[str]:
    """The contents of the fenced code blocks of ``text`` in one of ``languages``."""
    return [
        m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M) if m.group(1) in languages
    ]


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a shell block: continuations joined, comments dropped, split at ``&&``."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        command = []
        for word in words + ["&&"]:
            if word in ("&&", ";"):
                if command:
                    out.append(command)
                command = []
            else:
                command.append(word)
    return out


def inline_commands(text: str) -> list[str]:
    """The inline code spans of ``text`` that run a repository script (`` `python experiments/x.py --n 3` ``).

    (Inline ``edsr-jax`` spans are mostly fragments, such as `` `edsr-jax train` ``: only the
    shell blocks' ``edsr-jax`` commands are examples.)
    """
    return [" ".join(m.group(1).split()) for m in re.finditer(r"(?<!`)`(python3? experiments/[^`]+)`", text)]


def examples(program: str) -> list[tuple[str, list[str]]]:
    """``(page, argv)`` of every example in the README and docs/*.md that runs ``program``: each
    command of a shell block, and each inline command that is complete (no ``...``)."""
    found = []
    for path in PAGES:
        text = _read(path)
        commands = [
            argv
            for block in code_blocks(text, ("bash", "sh", "shell", "console"))
            for argv in shell_commands(block)
        ]
        commands += [shlex.split(c) for c in inline_commands(text) if "..." not in c and "|" not in c]
        found += [(os.path.relpath(path, ROOT), argv) for argv in commands if argv and argv[0] == program]
    if program == "python":
        found += [(page, ["python", *argv[1:]]) for page, argv in examples("python3")]
    return found


def test_the_pages_have_examples_to_check():
    assert len(examples("edsr-jax")) >= 30
    assert len(examples("python")) >= 5


@pytest.mark.parametrize(
    ("page", "argv"), examples("edsr-jax"), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_edsr_jax_examples_parse(page, argv, capsys):
    """The subcommand exists, its flags parse, and every ``--config.FIELD`` override is a field of
    the named config with a value of the field's type (nothing is executed)."""
    if "--help" in argv or "-h" in argv:
        pytest.skip("--help is run by test_cheap_examples_run")
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as error:
        pytest.fail(
            f"{page}: `{shlex.join(argv)}` does not parse: {capsys.readouterr().err.strip()} ({error})"
        )
    if getattr(args, "overrides", None) is not None and hasattr(args, "config"):
        config = config_flags.load_config(args.config)
        config_flags.apply_overrides(config, config_flags.split_overrides(args.overrides))


@pytest.mark.parametrize("argv", [["--help"], ["models"], ["info"], ["train", "--help"]])
def test_cheap_examples_run(argv):
    shown = {tuple(a[1:]) for _, a in examples("edsr-jax")}
    if argv != ["--help"] and argv != ["train", "--help"]:
        assert tuple(argv) in shown, f"`edsr-jax {' '.join(argv)}` is no longer an example in the docs"
    env = dict(
        os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), EDSR_JAX_OFFLINE="1"
    )
    done = subprocess.run(
        [sys.executable, "-m", "edsr_jax.cli", *argv], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, f"edsr-jax {' '.join(argv)}: exit {done.returncode}\n{done.stderr[-2000:]}"
    assert done.stdout.strip()


@pytest.mark.parametrize(
    ("page", "argv"), examples("python"), ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_python_script_examples_name_scripts_and_flags_that_exist(page, argv):
    if argv[1] in ("-m", "-c") or argv[1].startswith("-"):
        return
    script = os.path.join(ROOT, argv[1])
    assert os.path.isfile(script), f"{page}: `{shlex.join(argv)}` names a script that does not exist"
    source = _read(script)
    for word in argv[2:]:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            assert f'"{flag}"' in source, f"{page}: {argv[1]} has no flag {flag}"


def test_a_script_example_runs_with_help():
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "tools", "what_happens_table.py"), "--help"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "--write" in done.stdout


def test_the_readme_python_examples_run():
    blocks = code_blocks(_read(os.path.join(ROOT, "README.md")), ("python",))
    assert blocks, "the README shows no Python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # tiny shapes: seconds


def test_the_readme_stays_short():
    lines = _read(os.path.join(ROOT, "README.md")).count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"
    )


def architecture_modules(text: str) -> set[str]:
    """The ``edsr_jax/...`` paths (modules and folders) named by the tree of docs/architecture.md."""
    block = next(b for b in code_blocks(text, ("",)) if b.startswith("edsr_jax/"))
    named, folders = set(), []
    for line in block.splitlines():
        indent = len(line) - len(line.lstrip())
        token = line.split()[0] if line.strip() else ""
        if not re.fullmatch(r"[\w]+(\.py|/)", token):
            continue  # a continuation line
        depth = indent // 2
        folders = folders[:depth]
        path = "/".join(folders + [token.rstrip("/")])
        named.add(path + ("/" if token.endswith("/") else ""))
        if token.endswith("/"):
            folders.append(token.rstrip("/"))
    return named


def test_architecture_lists_every_module():
    named = architecture_modules(_read(os.path.join(ROOT, "docs", "architecture.md")))
    required, optional = set(), set()  # a folder's __init__.py may be named, need not be
    for path in glob.glob(os.path.join(ROOT, "edsr_jax", "**", "*.py"), recursive=True):
        relative = os.path.relpath(path, ROOT).replace(os.sep, "/")
        is_folder_init = relative.endswith("/__init__.py") and relative != "edsr_jax/__init__.py"
        (optional if is_folder_init else required).add(relative)
        required.add(os.path.dirname(relative) + "/")
    missing = sorted(required - named)
    stale = sorted(named - required - optional)
    assert not missing, f"docs/architecture.md does not list: {', '.join(missing)}"
    assert not stale, f"docs/architecture.md lists modules that do not exist: {', '.join(stale)}"


def test_the_configuration_reference_covers_every_field():
    """docs/configuration.md is generated from configs/default.py: every field, its default and
    its comment (a field added without a comment fails here, not only in the docs build)."""
    sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))
    try:
        import config_reference
    finally:
        sys.path.pop(0)
    from edsr_jax.configs import default

    def leaves(config, prefix=""):
        for key, value in config.items():
            if hasattr(value, "keys"):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    rows = {name: (shown, text) for name, shown, text in config_reference.rows()}
    fields = dict(leaves(default.get_config()))
    assert set(rows) == set(fields)
    for name, value in fields.items():
        assert rows[name][0] == repr(value) and rows[name][1], name
    assert "global batch" in rows["batch_size"][1]  # the comment of that line, not a neighbour's
