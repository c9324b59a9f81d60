"""The one exception type for a user's mistake (printed as one line, exit status 2), and message helpers."""

from __future__ import annotations

from collections.abc import Sequence

# How many names a message lists before "and N more".
MAX_NAMES_IN_MESSAGE = 5
# Longest underlying-library message quoted inside one of our one-line errors.
MAX_QUOTED_CHARS = 300


class UserError(ValueError):
    """A bad path, file, value or configuration: names the field, the value seen and one that works."""


def listing(names: Sequence[str], limit: int = MAX_NAMES_IN_MESSAGE) -> str:
    """``a, b, c`` for up to ``limit`` names, then ``and N more``."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    rest = len(names) - limit
    return shown + (f" and {rest} more" if rest > 0 else "")


def quote(error: BaseException, limit: int = MAX_QUOTED_CHARS) -> str:
    """``Type: message`` of another library's exception, on one line and at most ``limit`` chars."""
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{type(error).__name__}: {text}"
