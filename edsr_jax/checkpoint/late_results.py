"""What Orbax leaves behind when one read or write of a restore or save fails part-way.

Orbax runs each restore and save in a fresh asyncio event loop and closes it when the call returns.
When one of its reads fails (a trainer deleted the step being read: readers retry, see
``manager.restore_variables``), the call returns at once and its other reads are abandoned:

* reads not yet started are coroutines never awaited; left to the garbage collector, each is
  reported, at a random later moment, as an "Exception ignored" error in unrelated code
  (:func:`collect_abandoned_reads` collects them quietly, right away);
* reads already handed to TensorStore finish later, in TensorStore's threads, and deliver their
  result to the closed loop: Python reports each as ``Exception ignored in: None ... RuntimeError:
  Event loop is closed``. Nobody is waiting for such a result (its loop is gone), so the report says
  nothing a user can act on; :func:`ignore_results_for_closed_loops` drops exactly these reports
  and passes every other one on. It changes ``sys.unraisablehook`` for the whole process, so the
  library never calls it: the ``edsr-jax`` command does, for its own process, and a program that
  reads checkpoints while a trainer writes them may.
"""

from __future__ import annotations

import gc
import inspect
import logging
import sys
import threading

_lock = threading.Lock()


def is_result_for_a_closed_loop(unraisable) -> bool:
    """Whether an unraisable-exception report is a late result delivered to a closed event loop.

    True only for ``RuntimeError("Event loop is closed")`` raised by the loop's
    ``call_soon_threadsafe`` when called from native code (TensorStore's completion callbacks:
    the report names no object), never for such an error raised in Python code.
    """
    if unraisable.exc_type is not RuntimeError or unraisable.object is not None:
        return False
    if str(unraisable.exc_value) != "Event loop is closed":
        return False
    names, tb = [], unraisable.exc_traceback
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names == ["call_soon_threadsafe", "_check_closed"]


def ignore_results_for_closed_loops() -> None:
    """Drops the reports of late results for closed loops, from here on, in this process.

    Wraps the current ``sys.unraisablehook`` (once: calling again is a no-op while the wrapper is
    installed; a hook installed later is wrapped again on the next call). Every other report goes
    to the wrapped hook unchanged.
    """
    with _lock:
        current = sys.unraisablehook
        if getattr(current, "_edsr_jax_drops_late_results", False):
            return

        def hook(unraisable):
            if is_result_for_a_closed_loop(unraisable):
                logging.getLogger(__name__).debug("dropped a result delivered to a closed event loop")
            else:
                current(unraisable)

        hook._edsr_jax_drops_late_results = True
        sys.unraisablehook = hook


def collect_abandoned_reads() -> None:
    """Collects, quietly, the reads never started of a restore that failed (coroutines)."""
    previous, quiet = sys.unraisablehook, logging.getLogger("asyncio")
    sys.unraisablehook = lambda u: None if inspect.iscoroutine(u.object) else previous(u)
    was_disabled, quiet.disabled = quiet.disabled, True
    try:
        gc.collect()
    finally:
        sys.unraisablehook, quiet.disabled = previous, was_disabled
