"""SIGTERM as a save-and-stop request at the next step boundary."""

from __future__ import annotations

import signal
import threading

import jax
import orbax.checkpoint as ocp


class PreemptionGuard:
    """Turns SIGTERM into a request to save and stop at the next step boundary (a context manager).

    With several processes SIGTERM is left to JAX's preemption notifier, and Orbax's sync point makes
    every process stop at the same step; :meth:`request` must then be made by all at the same step.
    """

    def __init__(self, manager: ocp.CheckpointManager | None = None):
        self._manager = manager
        self._requested = threading.Event()
        self._previous = None

    def __enter__(self) -> PreemptionGuard:
        if not self._multi_process() and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _on_sigterm(self, signum, frame) -> None:
        del signum, frame
        self._requested.set()

    def request(self) -> None:
        """Asks the loop to stop (what SIGTERM does)."""
        self._requested.set()

    def _multi_process(self) -> bool:
        return jax.process_count() > 1 and self._manager is not None

    def should_stop(self, step: int) -> bool:
        """Whether to save and stop after ``step``."""
        if self._requested.is_set():
            return True
        return self._multi_process() and bool(self._manager.reached_preemption(step))
