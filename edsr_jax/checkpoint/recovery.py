"""What a checkpoint that cannot be read is: damaged (set aside) or not (left in place).

Moving a good checkpoint away would make the next run start over; nothing here deletes one.
"""

from __future__ import annotations

import json
import os
import re
import warnings

import jax
import numpy as np
from etils import epath

# Longest part of another library's message quoted in a warning or error about a checkpoint.
MAX_REASON_CHARS = 300


def set_aside(directory: str | os.PathLike, step: int, why: str) -> epath.Path:
    """Renames ``directory/<step>`` to ``<why>-<step>`` (``-2``, ... when taken); returns the new path."""
    folder = epath.Path(directory) / str(step)
    aside = folder.parent / f"{why}-{step}"
    n = 1
    while aside.exists():
        n += 1
        aside = folder.parent / f"{why}-{step}-{n}"
    folder.rename(aside)
    return aside


# How a restore attempt ended; the most serious outcome on any process is every process's.
READ, DAMAGED, FAILED = 0, 1, 2
# What TensorStore and Orbax say about missing or undecodable files.
_DAMAGE = re.compile(
    r"DATA_LOSS|NOT_FOUND|decompress|[Tt]runcated|[Cc]orrupt|[Cc]hecksum|Error (decoding|parsing)|"
    r"[Uu]nexpected end"
)


def is_damage(error: BaseException) -> bool:
    """Whether ``error`` (or its cause) says a checkpoint's files are missing or undecodable.

    OS errors, exhausted memory, an unexpected tree or a bug are not damage: the checkpoint may be fine.
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, json.JSONDecodeError | UnicodeDecodeError | FileNotFoundError):
            return True
        if isinstance(error, OSError | MemoryError):
            return False
        if _DAMAGE.search(str(error)):
            return True
        error = error.__cause__ or error.__context__
    return False


def outcome_of(error: BaseException | None) -> int:
    """:data:`READ` (no error), :data:`DAMAGED` (:func:`is_damage`) or :data:`FAILED`."""
    if error is None:
        return READ
    return DAMAGED if is_damage(error) else FAILED


def _gather(value: int) -> np.ndarray:
    if jax.process_count() == 1:
        return np.array([value])
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.int32(value)))


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _is_chief() -> bool:
    return jax.process_index() == 0


def agree(outcome: int) -> int:
    """The most serious of every process's ``outcome``, the same on every process."""
    return int(np.max(_gather(outcome)))


def left_in_place(directory: str | os.PathLike, step: int, error: Exception | None) -> Exception:
    """The error for a step that failed for a reason that is not damage; it names the folder, which stays."""
    folder = epath.Path(directory) / str(step)
    note = (
        f"reading checkpoint {folder} failed and it was left in place (its files are not known to be damaged)"
    )
    if error is None:
        return RuntimeError(f"{note}: another process could not read it (see that process's error)")
    if isinstance(error, OSError):
        error.add_note(note)
        return error
    reason = " ".join(str(error).split())[:MAX_REASON_CHARS] or type(error).__name__
    return RuntimeError(f"{note}: {type(error).__name__}: {reason}")


def set_aside_damaged(directory: str | os.PathLike, step: int, error: Exception | None) -> None:
    """Warns about a damaged checkpoint; process 0 renames it to ``unreadable-<step>``, the others wait."""
    folder = epath.Path(directory) / str(step)
    reason = "damaged as another process read it"
    if error is not None:
        reason = f"{type(error).__name__}: {' '.join(str(error).split())[:MAX_REASON_CHARS]}"
    aside = "unreadable-<step>"
    if _is_chief():
        aside = os.fspath(set_aside(directory, step, "unreadable"))
    _barrier(f"edsr-jax: set aside step {step}")
    warnings.warn(
        f"checkpoint {folder} cannot be read ({reason}); moved it to {aside} and using the previous "
        "checkpoint",
        stacklevel=4,
    )
