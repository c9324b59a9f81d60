"""One trainer per workdir: an exclusive lock (``fcntl.flock``, or a heartbeat lease on ``gs://``).

A lock left by a dead trainer is stale and is taken over with a warning; readers take no lock.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import threading
import time

from etils import epath

from edsr_jax import atomic
from edsr_jax.checkpoint import layout
from edsr_jax.errors import UserError

LOCK_FILE = ".lock"
# A lease's holder rewrites its heartbeat this often...
HEARTBEAT_SECONDS = 30.0
# ... and a lease whose heartbeat is older than this is stale.
STALE_SECONDS = 120.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def holder_info(**extra) -> dict:
    """This process as a lock holder: host, PID, start time (plus ``extra``)."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": _now(), **extra}


def describe(holder: dict) -> str:
    """``host H, PID P, since T`` of a holder record."""
    return f"host {holder.get('host', '?')}, PID {holder.get('pid', '?')}, since {holder.get('since', '?')}"


def _parse(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _busy(workdir: str, holder: dict) -> UserError:
    return UserError(
        f"workdir {workdir} is being trained by another run ({describe(holder)}); wait for it, stop it, "
        "or use another workdir"
    )


class WorkdirLock:
    """Exclusive ownership of a training workdir for the ``with`` block.

    ``mode``: ``"auto"`` (flock on local paths, lease on URLs), ``"flock"`` or ``"lease"``; entering
    raises UserError naming the running trainer that holds the workdir.
    """

    def __init__(self, workdir: str, *, mode: str = "auto", clock=time.time):
        if mode not in ("auto", "flock", "lease"):
            raise ValueError(f"mode must be 'auto', 'flock' or 'lease', got {mode!r}")
        self.workdir = os.fspath(workdir)
        self.mode = ("lease" if "://" in self.workdir else "flock") if mode == "auto" else mode
        self.path = epath.Path(self.workdir) / LOCK_FILE
        self.clock = clock
        self.holder: dict = {}
        self._file = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False  # another run took the lease
        self.taken_over: str | None = None

    def _acquire_flock(self) -> bool:
        import fcntl

        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                handle.seek(0)
                holder = _parse(handle.read())
                handle.close()
                raise _busy(self.workdir, holder) from None
            handle.close()
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                return False
            raise
        handle.seek(0)
        previous = _parse(handle.read())
        if previous:
            self.taken_over = (
                f"the lock of {self.workdir} was left by a run that ended without releasing it "
                f"({describe(previous)}); taking it over"
            )
        self.holder = holder_info()
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(self.holder) + "\n")
        handle.flush()
        self._file = handle
        return True

    def _read_lease(self) -> dict:
        try:
            return _parse(self.path.read_text())
        except (FileNotFoundError, OSError):
            return {}

    def _acquire_lease(self) -> None:
        previous = self._read_lease()
        if previous:
            age = self.clock() - float(previous.get("heartbeat", 0))
            if age < STALE_SECONDS:
                raise _busy(self.workdir, previous)
            self.taken_over = (
                f"the lease of {self.workdir} is stale (last heartbeat {age:.0f} s ago, over "
                f"{STALE_SECONDS:.0f} s; {describe(previous)}); taking it over"
            )
        self.holder = holder_info(heartbeat=self.clock(), lease=os.urandom(8).hex())
        atomic.write_json(self.path, self.holder)
        self._thread = threading.Thread(target=self._beat, name="edsr-lease", daemon=True)
        self._thread.start()

    def heartbeat(self) -> None:
        """Rewrites the lease's heartbeat; notes (``lost``) when another run took the lease."""
        current = self._read_lease()
        if current.get("lease") != self.holder.get("lease"):
            self.lost = True
            return
        self.holder["heartbeat"] = self.clock()
        atomic.write_json(self.path, self.holder)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                self.heartbeat()

    def check(self) -> None:
        """Raises UserError if another run took over the lease (called by the training loop)."""
        if self.lost:
            raise UserError(
                f"another run took over the lease of {self.workdir} ({describe(self._read_lease())}); "
                "this run stops so that two runs do not write one workdir"
            )

    def __enter__(self) -> WorkdirLock:
        layout.not_a_file(self.workdir)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.mode == "flock" and self._acquire_flock():
            return self
        self.mode = "lease"
        self._acquire_lease()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            import fcntl

            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()  # an empty lock file: released cleanly, not stale
                self._file.flush()
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            if not self.lost and self._read_lease().get("lease") == self.holder.get("lease"):
                with contextlib.suppress(OSError):
                    self.path.unlink()


def read_holder(workdir: str) -> dict:
    """The holder a workdir's lock file names (``{}`` when released or absent)."""
    try:
        return _parse((epath.Path(workdir) / LOCK_FILE).read_text())
    except (FileNotFoundError, OSError):
        return {}
