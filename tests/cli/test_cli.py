"""The command line's exit statuses: a user's mistake is one line and 2, a bug is a traceback and 1."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

from edsr_jax import cli
from edsr_jax.errors import UserError

# Runs `edsr-jax info` with its run() replaced, as the console script would (sys.exit(main())).
SCRIPT = textwrap.dedent(
    """
    import sys
    from edsr_jax import cli
    from edsr_jax.cli import info

    def broken(args):
        {body}

    info.run = broken
    sys.exit(cli.main(["info", *sys.argv[1:]]))
    """
)


def run_info_raising(body: str, *args: str) -> subprocess.CompletedProcess:
    code = SCRIPT.format(body=body)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_a_bug_inside_a_command_shows_its_traceback_and_exits_1():
    result = run_info_raising("return {}['missing']")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "KeyError: 'missing'" in result.stderr
    assert not any(line.startswith("edsr-jax info: error:") for line in result.stderr.splitlines())


def test_a_value_error_from_a_bug_is_not_mistaken_for_a_user_error():
    # (the old CLI printed every ValueError as a one-line user error with exit 2)
    result = run_info_raising("raise ValueError('internal invariant broken')")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "ValueError: internal invariant broken" in result.stderr


def test_a_user_error_is_one_line_and_exit_2():
    result = run_info_raising("raise __import__('edsr_jax.errors').errors.UserError('no model at /x: gone')")
    assert result.returncode == 2
    assert result.stderr.strip() == "edsr-jax info: error: no model at /x: gone"


def test_debug_shows_the_traceback_of_a_user_error():
    result = run_info_raising("raise __import__('edsr_jax.errors').errors.UserError('bad value')", "--debug")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "UserError: bad value" in result.stderr


@pytest.mark.parametrize(
    "error, is_user",
    [
        (UserError("a bad value"), True),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x.png"), True),
        (OSError(errno.ENOSPC, "No space left on device", "/runs/x/checkpoints/40"), True),
        (OSError("something inside a library"), False),
        (ValueError("a bug"), False),
        (KeyError("a bug"), False),
        (RuntimeError("non-finite loss"), False),
    ],
)
def test_what_counts_as_a_user_error(error, is_user):
    assert (cli.user_message(error) is not None) == is_user


def test_main_returns_2_for_a_missing_input_without_a_traceback(tmp_path, capsys):
    code = cli.main(["downscale", "--scale", "2", str(tmp_path / "absent.png"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "absent.png" in err
    assert not os.path.exists(tmp_path / "out")


def test_every_command_has_help_and_a_run(capsys):
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: edsr-jax " + name in capsys.readouterr().out
