"""Quiets the late reports of the reads Orbax abandons when one read of a restore fails.

:func:`ignore_results_for_closed_loops` is process-wide, so only the command calls it.
"""

from __future__ import annotations

import gc
import inspect
import logging
import sys
import threading

_lock = threading.Lock()


def is_result_for_a_closed_loop(unraisable) -> bool:
    """Whether an unraisable report is TensorStore's late result for a closed loop (from native code)."""
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
    """Wraps ``sys.unraisablehook`` (once) to drop late results for closed loops; others pass on."""
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
