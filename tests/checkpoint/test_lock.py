"""One trainer per workdir (edsr_jax.checkpoint.lock): a second one is refused naming the holder,
a lock left by a killed run is taken over, leases go stale, readers take no lock."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from support.paths import ROOT

from edsr_jax.checkpoint import lock
from edsr_jax.errors import UserError


def test_a_second_lock_is_refused_naming_the_holder_and_a_clean_release_leaves_nothing_stale(tmp_path):
    workdir = str(tmp_path / "run")
    with lock.WorkdirLock(workdir) as first:
        assert first.mode == "flock" and first.taken_over is None
        assert lock.read_holder(workdir)["pid"] == os.getpid()
        with pytest.raises(
            UserError,
            match=rf"workdir .*run is being trained by another run \(host .*, PID {os.getpid()}, since ",
        ):
            with lock.WorkdirLock(workdir):
                pass
    assert lock.read_holder(workdir) == {}  # released: the file says nobody
    with lock.WorkdirLock(workdir) as again:
        assert again.taken_over is None


def test_a_lock_left_by_a_killed_trainer_is_taken_over_naming_it(tmp_path):
    workdir = str(tmp_path / "run")
    code = textwrap.dedent(
        f"""
        import time
        from edsr_jax.checkpoint import lock
        with lock.WorkdirLock({workdir!r}):
            print("held", flush=True)
            time.sleep(600)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=f"PID {holder.pid}"):
            lock.WorkdirLock(workdir).__enter__()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
    with lock.WorkdirLock(workdir) as taken:
        assert f"PID {holder.pid}" in taken.taken_over and "taking it over" in taken.taken_over


def test_leases_refuse_while_fresh_go_stale_and_notice_being_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT_SECONDS", 3600.0)  # heartbeats by hand below
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    workdir = str(tmp_path / "run")
    first = lock.WorkdirLock(workdir, mode="lease", clock=clock).__enter__()
    now[0] += lock.STALE_SECONDS - 1
    with pytest.raises(UserError, match="being trained by another run"):
        lock.WorkdirLock(workdir, mode="lease", clock=clock).__enter__()
    first.heartbeat()  # a live holder keeps its lease fresh
    now[0] += lock.STALE_SECONDS - 1
    with pytest.raises(UserError, match="being trained by another run"):
        lock.WorkdirLock(workdir, mode="lease", clock=clock).__enter__()
    now[0] += 2  # no heartbeat for more than STALE_SECONDS: the holder is gone
    second = lock.WorkdirLock(workdir, mode="lease", clock=clock).__enter__()
    assert "is stale (last heartbeat" in second.taken_over
    first.heartbeat()
    with pytest.raises(UserError, match="another run took over the lease"):
        first.check()  # the old holder stops instead of writing beside the new one
    second.check()
    first.__exit__(None, None, None)
    assert lock.read_holder(workdir)["lease"] == second.holder["lease"]  # (its release leaves the new lease)
    second.__exit__(None, None, None)
    assert lock.read_holder(workdir) == {}


def test_a_second_trainer_on_a_workdir_exits_at_once_naming_the_first(tmp_path, cache_dir):
    from support.paths import TEST_CONFIG

    workdir = str(tmp_path / "w")
    command = [
        sys.executable,
        "-m",
        "edsr_jax.cli",
        "train",
        "--config",
        TEST_CONFIG,
        "--workdir",
        workdir,
        "--config.data.cache_dir",
        cache_dir,
    ]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    first = subprocess.Popen(
        [*command, "--config.num_train_steps", "100000"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        while "steps 0 -> 100000" not in first.stdout.readline():
            assert first.poll() is None, "the first trainer did not start"
        started = time.time()
        second = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        (line,) = second.stderr.strip().splitlines()[-1:]
        assert line.startswith("edsr-jax train: error: workdir ") and f"PID {first.pid}" in line
        assert time.time() - started < 60  # before compiling anything
    finally:
        first.kill()
        first.wait()
