"""Which unreadable checkpoints are set aside (edsr_jax.checkpoint.recovery through
manager.restore): only damaged files; a transient failure leaves the step in place; every process
makes the same decision."""

import errno
import json
import os
import warnings

import numpy as np
import pytest
from support.checkpoints import abstract, assert_states_equal, make_state, save_steps

from edsr_jax.checkpoint import manager as checkpoint_manager
from edsr_jax.checkpoint import recovery


def empty_the_data_files(folder):
    """A half-copied step: every OCDBT data file of its params emptied (what truncation leaves)."""
    for root, _, names in os.walk(folder / checkpoint_manager.PARAMS_ITEM):
        for name in names:
            if "/d" in root.replace(os.sep, "/"):
                open(os.path.join(root, name), "wb").close()


def restore_latest(directory):
    manager = checkpoint_manager.create_manager(directory, keep=5)
    try:
        return checkpoint_manager.restore(manager, abstract(make_state(0)))
    finally:
        manager.close()


def failing_restore(monkeypatch, step, error):
    """Orbax's restore raises ``error`` for ``step`` (as a permission problem or memory would)."""
    original = checkpoint_manager.ocp.CheckpointManager.restore

    def restore(self, at, *args, **kwargs):
        if at == step:
            raise error
        return original(self, at, *args, **kwargs)

    monkeypatch.setattr(checkpoint_manager.ocp.CheckpointManager, "restore", restore)


def test_a_truncated_latest_step_is_set_aside_and_the_previous_one_restored(tmp_path):
    save_steps(tmp_path, [1, 2], keep=5).close()
    empty_the_data_files(tmp_path / "2")
    with pytest.warns(UserWarning, match=rf"checkpoint {tmp_path / '2'} cannot be read .*unreadable-2"):
        state = restore_latest(tmp_path)
    assert_states_equal(state, make_state(1))
    assert sorted(os.listdir(tmp_path)) == ["1", "unreadable-2"]  # moved, not deleted


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(errno.EACCES, "Permission denied", "params/d/abc"),
        MemoryError("RESOURCE_EXHAUSTED: out of memory while restoring"),
        ValueError("User-provided restore item and on-disk value metadata tree structures do not match"),
    ],
    ids=["permission", "memory", "tree_mismatch"],
)
def test_a_failure_that_is_not_damage_leaves_every_step_in_place_and_names_the_step(
    tmp_path, monkeypatch, error
):
    save_steps(tmp_path, [1, 2], keep=5).close()
    failing_restore(monkeypatch, 2, error)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no "set aside" warning either)
        with pytest.raises((OSError, RuntimeError)) as raised:
            restore_latest(tmp_path)
    where = str(raised.value) + " ".join(getattr(raised.value, "__notes__", []))
    assert str(tmp_path / "2") in where and "left in place" in where
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]
    monkeypatch.undo()
    assert_states_equal(restore_latest(tmp_path), make_state(2))  # it was fine all along


def test_is_damage_knows_missing_and_undecodable_files_and_nothing_else():
    def chained(outer, inner):
        try:
            try:
                raise inner
            except Exception as e:
                raise outer from e
        except Exception as e:
            return e

    tensorstore = ValueError(
        'FAILED_PRECONDITION: Error reading "head.kernel/0.0" in OCDBT database at local file "p/": '
        "Truncated Zstd-compressed stream; at byte 0"
    )
    damaged = [
        chained(Exception("Encountered error while reading array index"), tensorstore),
        ValueError('NOT_FOUND: Metadata at "block_0.conv1.bias/.zarray" in OCDBT database does not exist'),
        json.JSONDecodeError("Expecting value", "", 0),
        FileNotFoundError(errno.ENOENT, "No such file or directory", "train/manifest.ocdbt"),
    ]
    not_damaged = [
        PermissionError(errno.EACCES, "Permission denied", "x"),
        OSError(errno.EIO, "Input/output error", "x"),
        MemoryError(),
        ValueError("PERMISSION_DENIED: Error reading local file"),
        ValueError("tree structures do not match"),
        KeyError("opt_state"),
    ]
    assert [recovery.is_damage(e) for e in damaged] == [True] * len(damaged)
    assert [recovery.is_damage(e) for e in not_damaged] == [False] * len(not_damaged)


class OtherProcess:
    """Two processes: this one (process 0) and another whose restore outcomes are ``outcomes``."""

    def __init__(self, monkeypatch, *outcomes):
        self.outcomes, self.gathered = list(outcomes), []
        monkeypatch.setattr(recovery, "_gather", self.gather)
        monkeypatch.setattr(recovery, "_barrier", lambda name: None)
        monkeypatch.setattr(recovery, "_is_chief", lambda: True)

    def gather(self, value):
        self.gathered.append(int(value))
        return np.array([int(value), self.outcomes.pop(0)])


def test_damage_seen_by_another_process_sets_the_step_aside_on_this_one_too(tmp_path, monkeypatch):
    save_steps(tmp_path, [1, 2], keep=5).close()
    other = OtherProcess(monkeypatch, recovery.DAMAGED, recovery.READ)
    with pytest.warns(UserWarning, match="damaged as another process read it"):
        state = restore_latest(tmp_path)
    assert other.gathered == [recovery.READ, recovery.READ]  # step 2 read fine here, then step 1
    assert_states_equal(state, make_state(1))
    assert sorted(os.listdir(tmp_path)) == ["1", "unreadable-2"]


def test_a_failure_on_another_process_stops_this_one_too_leaving_the_step(tmp_path, monkeypatch):
    save_steps(tmp_path, [1, 2], keep=5).close()
    empty_the_data_files(tmp_path / "2")  # damaged here, but the other process could not read it at all
    OtherProcess(monkeypatch, recovery.FAILED)
    with pytest.raises(RuntimeError, match=r"checkpoint .*/2 failed and it was left in place"):
        restore_latest(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]
