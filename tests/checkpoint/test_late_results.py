"""A failed Orbax read's late results are not reported as errors; every other report still is."""

import asyncio
import sys
import time

import tensorstore as ts

from edsr_jax.checkpoint import late_results, manager


def _deliver_a_result_to_a_closed_loop() -> None:
    """What an abandoned Orbax read does: TensorStore finishes it after its event loop closed."""
    promise, future = ts.Promise.new()

    async def start_reading():
        asyncio.ensure_future(_await(future))
        await asyncio.sleep(0.01)  # (the read is handed to TensorStore; the call then returns)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(start_reading())
    loop.close()
    promise.set_result(b"bytes nobody waits for")
    time.sleep(0.05)


async def _await(future):
    return await future


class _RaisesWhenCollected:
    def __del__(self):
        raise RuntimeError("Event loop is closed")  # (same words, but from Python code: a real error)


def test_late_results_for_closed_loops_are_dropped_and_other_reports_pass(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append((u.exc_type, str(u.exc_value))))
    _deliver_a_result_to_a_closed_loop()
    assert seen == [(RuntimeError, "Event loop is closed")]  # (what the reports look like without it)

    seen.clear()
    late_results.ignore_results_for_closed_loops()
    late_results.ignore_results_for_closed_loops()  # (once: a second call wraps nothing again)
    _deliver_a_result_to_a_closed_loop()
    assert seen == []

    _RaisesWhenCollected()  # collected at once: its error is reported
    assert len(seen) == 1 and seen[0] == (RuntimeError, "Event loop is closed")
    hook = sys.unraisablehook
    late_results.ignore_results_for_closed_loops()
    assert sys.unraisablehook is hook


def test_the_library_leaves_the_unraisable_hook_alone(monkeypatch, tmp_path):
    hook = lambda u: None  # noqa: E731
    monkeypatch.setattr(sys, "unraisablehook", hook)
    manager.create_manager(tmp_path, read_only=True).close()
    assert sys.unraisablehook is hook
