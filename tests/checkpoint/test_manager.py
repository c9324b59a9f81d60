"""Training checkpoints (edsr_jax.checkpoint.manager): exact restore, keep-last-K-plus-best, partial
checkpoints, the SIGTERM guard."""

import os
import shutil
import signal

import numpy as np
import pytest
from etils import epath
from support.checkpoints import abstract, assert_states_equal, make_state, save_steps

from edsr_jax.checkpoint import manager as checkpoint_manager
from edsr_jax.checkpoint import preemption
from edsr_jax.errors import UserError


def test_restore_is_exact_and_keeps_last_k_plus_best(tmp_path):
    manager = save_steps(tmp_path, [1, 2, 3, 4, 5, 6], scores={2: 31.5, 4: 30.0}, keep=2)
    assert sorted(manager.all_steps()) == [2, 5, 6]  # last two, and the best scored one
    assert checkpoint_manager.best_step(manager) == 2
    assert (
        checkpoint_manager.resolve_step(manager, "best") == 2
        and checkpoint_manager.resolve_step(manager) == 6
    )
    assert all(checkpoint_manager.is_complete(manager, s) for s in (2, 5, 6))
    restored = checkpoint_manager.restore(manager, abstract(make_state(0)))
    assert_states_equal(restored, make_state(6))
    assert_states_equal(checkpoint_manager.restore(manager, abstract(make_state(0)), step=2), make_state(2))
    assert checkpoint_manager.read_meta(manager, 6)["data_position"] == 6
    manager.close()


def test_restore_params_resolves_latest_best_and_step(tmp_path):
    save_steps(tmp_path, [1, 2, 3], scores={1: 40.0, 3: 20.0}, keep=1).close()
    target = abstract(make_state(0)).params
    for which, step in (("latest", 3), ("best", 1), (1, 1)):
        params, got = checkpoint_manager.restore_params(tmp_path, target, which)
        assert got == step
        np.testing.assert_array_equal(params["head"]["kernel"], make_state(step).params["head"]["kernel"])
    with pytest.raises(UserError, match="no checkpoint for step 2 .* kept steps: \\[1, 3\\]"):
        checkpoint_manager.restore_params(tmp_path, target, 2)


def test_a_step_deleted_while_it_is_read_resolves_again_and_a_damaged_one_raises(tmp_path, monkeypatch):
    save_steps(tmp_path, [1, 2], keep=5).close()
    target = abstract(make_state(0)).params
    original, calls = checkpoint_manager.ocp.CheckpointManager.restore, []

    def restore_while_a_trainer_deletes(self, step, *args, **kwargs):
        calls.append(step)
        if len(calls) > 1:
            return original(self, step, *args, **kwargs)
        # The trainer's retention empties the files of the step being read (as seen in CI:
        # "Truncated Zstd-compressed stream"), then removes its folder.
        for root, _, names in os.walk(tmp_path / str(step) / checkpoint_manager.PARAMS_ITEM):
            for name in names:
                if "/d" in root.replace(os.sep, "/"):
                    open(os.path.join(root, name), "wb").close()
        try:
            return original(self, step, *args, **kwargs)
        finally:
            shutil.rmtree(tmp_path / str(step))

    monkeypatch.setattr(checkpoint_manager.ocp.CheckpointManager, "restore", restore_while_a_trainer_deletes)
    params, step = checkpoint_manager.restore_params(tmp_path, target, "latest")
    assert (step, calls) == (1, [2, 1])
    np.testing.assert_array_equal(params["head"]["kernel"], make_state(1).params["head"]["kernel"])
    monkeypatch.undo()

    # A step that stays complete but cannot be read is an error, not a silent fallback to step 1.
    save_steps(tmp_path, [3], keep=5).close()
    for root, _, files in os.walk(tmp_path / "3" / checkpoint_manager.PARAMS_ITEM):
        for name in files:
            if "/d" in root.replace(os.sep, "/"):  # the OCDBT data files
                open(os.path.join(root, name), "wb").close()
    with pytest.raises(Exception, match="(?i)truncat|corrupt|invalid|error"):
        checkpoint_manager.restore_params(tmp_path, target, "latest")


def test_a_step_deleted_while_a_reader_lists_the_folder_is_listed_again(tmp_path, monkeypatch):
    # Seen in CI: a reader opened the folder while the trainer's retention removed the oldest step
    # between Orbax's listing and its reading of that step's commit time.
    save_steps(tmp_path, [1, 2], keep=5).close()
    path_type, deleted = type(epath.Path(tmp_path)), []
    original = path_type.exists

    def exists_while_a_trainer_deletes(self):
        # The step's folder goes just as Orbax looks for its commit record.
        if self.parent.name == "2" and self.name.startswith("_CHECKPOINT_METADATA") and not deleted:
            shutil.rmtree(tmp_path / "2")
            deleted.append(self.parent.name)
        return original(self)

    monkeypatch.setattr(path_type, "exists", exists_while_a_trainer_deletes)
    params, step = checkpoint_manager.restore_params(tmp_path, abstract(make_state(0)).params, "latest")
    assert (step, deleted) == (1, ["2"])
    np.testing.assert_array_equal(params["head"]["kernel"], make_state(1).params["head"]["kernel"])


def test_partial_checkpoints_are_never_restored(tmp_path):
    manager = save_steps(tmp_path, [1, 2], keep=5)
    # A save killed mid-write leaves Orbax's temporary folder; a partial copy lacks files.
    shutil.copytree(tmp_path / "2", tmp_path / "3.orbax-checkpoint-tmp-1700000000")
    shutil.copytree(tmp_path / "2", tmp_path / "4")
    os.remove(tmp_path / "4" / "_CHECKPOINT_METADATA")
    shutil.copytree(tmp_path / "2", tmp_path / "5")
    shutil.rmtree(tmp_path / "5" / checkpoint_manager.TRAIN_ITEM)
    manager.reload()
    assert checkpoint_manager.complete_steps(manager) == [1, 2]
    assert_states_equal(checkpoint_manager.restore(manager, abstract(make_state(0))), make_state(2))
    moved = checkpoint_manager.set_aside_incomplete(manager)
    assert moved == [(4, str(tmp_path / "incomplete-4")), (5, str(tmp_path / "incomplete-5"))]
    assert not (tmp_path / "4").exists() and not (tmp_path / "5").exists()
    assert (tmp_path / "incomplete-5" / checkpoint_manager.PARAMS_ITEM).is_dir()  # set aside, not deleted
    # The steps can be saved again afterwards.
    assert checkpoint_manager.save(manager, make_state(4))
    manager.wait_until_finished()
    assert checkpoint_manager.complete_steps(manager) == [1, 2, 4]
    manager.close()


def test_empty_directory_restores_nothing(tmp_path):
    manager = checkpoint_manager.create_manager(tmp_path / "none")
    assert checkpoint_manager.restore(manager, abstract(make_state(0))) is None
    with pytest.raises(UserError, match="no complete checkpoint"):
        checkpoint_manager.resolve_step(manager, "latest")
    manager.close()


def test_best_needs_a_scored_checkpoint_and_which_must_be_a_step(tmp_path):
    manager = save_steps(tmp_path, [1, 2], keep=2)
    with pytest.raises(UserError, match=r"no checkpoint in .* has a validation score \(val_psnr\)"):
        checkpoint_manager.resolve_step(manager, "best")
    with pytest.raises(
        UserError, match="which must be 'latest', 'best', 'best_or_latest' or a step number, got 'first'"
    ):
        checkpoint_manager.resolve_step(manager, "first")
    manager.close()


def test_best_or_latest_is_the_best_scored_step_else_the_latest(tmp_path):
    manager = save_steps(tmp_path / "scored", [1, 2, 3, 4], scores={2: 33.1, 3: 32.0}, keep=2)
    assert checkpoint_manager.resolve_step(manager, "best_or_latest") == 2  # not 4, the latest
    assert checkpoint_manager.score(manager, 2) == 33.1 and checkpoint_manager.score(manager, 4) is None
    manager.close()
    manager = save_steps(tmp_path / "unscored", [1, 2, 3], keep=2)
    assert checkpoint_manager.resolve_step(manager, "best_or_latest") == 3
    manager.close()
    target = abstract(make_state(0)).params
    params, step = checkpoint_manager.restore_params(tmp_path / "scored", target, "best_or_latest")
    assert step == 2
    np.testing.assert_array_equal(params["head"]["kernel"], make_state(2).params["head"]["kernel"])
    assert checkpoint_manager.describe_restored(tmp_path / "scored", 2, "best_or_latest") == (
        "step 2, best by val_psnr 33.10 dB"
    )
    assert checkpoint_manager.describe_restored(tmp_path / "unscored", 3, "best_or_latest") == (
        "step 3, the latest: no checkpoint was scored"
    )


def test_describe_step_says_which_checkpoint_and_why():
    assert checkpoint_manager.describe_step(300, "best", 33.104) == "step 300, best by val_psnr 33.10 dB"
    assert (
        checkpoint_manager.describe_step(300, "best_or_latest", 33.1) == "step 300, best by val_psnr 33.10 dB"
    )
    assert checkpoint_manager.describe_step(400, "best_or_latest", None) == (
        "step 400, the latest: no checkpoint was scored"
    )
    assert checkpoint_manager.describe_step(400, "latest", None) == "step 400, the latest"
    assert checkpoint_manager.describe_step(400, "latest", 32.0) == "step 400, the latest (val_psnr 32.00 dB)"
    assert checkpoint_manager.describe_step(200, 200, None) == "step 200"


def test_keep_must_be_positive(tmp_path):
    with pytest.raises(UserError, match=r"config\.keep_checkpoints must be at least 1, got 0"):
        checkpoint_manager.create_manager(tmp_path, keep=0)


def test_sigterm_requests_a_stop_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with preemption.PreemptionGuard() as guard:
        assert not guard.should_stop(1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.should_stop(2)
    assert signal.getsignal(signal.SIGTERM) is before
