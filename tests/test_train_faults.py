"""Training faults: SIGKILL at three points (two inside a checkpoint save), an unreadable latest
checkpoint, a full disk, a non-finite loss (with and without the spike guard) and a workdir of
another run (SIGTERM: test_train).

One uninterrupted reference run is shared by the module; the killed runs are real `edsr-jax
train` processes (started together, they share the persistent compilation cache); the reruns
that must end bit-identical to the reference run in this process.
"""

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from support.configs import TINY, tiny_config
from support.paths import TEST_CONFIG
from support.trees import assert_trees_equal, params_of

from edsr_jax import models, train
from edsr_jax.checkpoint import layout
from edsr_jax.checkpoint import manager as checkpoint_manager
from edsr_jax.errors import UserError

# The runs of this module share most compiled programs through a persistent XLA cache.
pytestmark = pytest.mark.usefixtures("compilation_cache")

# 12 steps, a checkpoint every 4, a learning-rate decay every 2 (so the step counter matters).
RUN = {
    "num_train_steps": 12,
    "checkpoint_every_steps": 4,
    "learning_rate_schedule": "step",
    "learning_rate_decay_steps": 2,
}
# Where each killed process dies (point, step), and the step its rerun must resume from.
KILLS = {
    "after_step_6": (("after_step", 6), 4),  # between checkpoints 4 and 8
    "writing_step_8": (("writing", 8), 4),  # inside Orbax's save of step 8, items being written
    "committing_step_8": (("committing", 8), 4),  # every file written, before the atomic rename
}
# Runs `edsr-jax train` after arranging to kill itself at POINT STEP (argv[1:3]).
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    point, at = sys.argv[1], int(sys.argv[2])
    import edsr_jax
    import orbax.checkpoint as ocp
    from orbax.checkpoint.path import atomicity
    from edsr_jax import cli
    from edsr_jax.checkpoint import manager, preemption

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "after_step":
        should_stop = preemption.PreemptionGuard.should_stop
        def patched(self, step):
            if step == at:
                self._manager.wait_until_finished()  # (the earlier asynchronous save completes)
                die()
            return should_stop(self, step)
        preemption.PreemptionGuard.should_stop = patched
    elif point == "writing":
        save_fn = ocp.JsonCheckpointHandler._save_fn
        async def patched(self, x, directory):
            if x.get("step") == at:
                die()
            return await save_fn(self, x, directory)
        ocp.JsonCheckpointHandler._save_fn = patched
    elif point == "committing":
        finalize = atomicity.AtomicRenameTemporaryPath.finalize
        async def patched(self):
            if self._final_path.name == str(at):
                die()
            return await finalize(self)
        atomicity.AtomicRenameTemporaryPath.finalize = patched
    sys.exit(cli.main(sys.argv[3:]))
    """
)


def run_fields(cache_dir):
    return {**TINY, "data.cache_dir": cache_dir, **{k: str(v) for k, v in RUN.items()}}


@pytest.fixture(scope="module")
def reference_run(cache_dir, tmp_path_factory):
    """The uninterrupted run (it also fills the compilation cache): ``(final state, workdir)``."""
    workdir = tmp_path_factory.mktemp("ref") / "run"
    return train.train_and_evaluate(tiny_config(cache_dir, **RUN), str(workdir)), workdir


@pytest.fixture(scope="module")
def reference(reference_run):
    return reference_run[0]


@pytest.fixture(scope="module")
def killed_runs(reference_run, cache_dir, compilation_cache, tmp_path_factory):
    """Starts every killed `edsr-jax train` at once; name -> (exit code, output, workdir)."""
    script = tmp_path_factory.mktemp("killer") / "killer.py"
    script.write_text(KILLER)
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": compilation_cache}
    points = {name: point for name, (point, _) in KILLS.items()}
    procs = {}
    for name, (point, at) in points.items():
        workdir = tmp_path_factory.mktemp(name) / "run"
        command = [
            sys.executable,
            str(script),
            point,
            str(at),
            "train",
            "--config",
            TEST_CONFIG,
            "--workdir",
            str(workdir),
        ]
        command += [f"--config.{k}={v}" for k, v in run_fields(cache_dir).items()]
        procs[name] = (
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env),
            workdir,
        )
    results = {}
    for name, (proc, workdir) in procs.items():
        out = proc.communicate(timeout=240)[0]
        results[name] = (proc.returncode, out, workdir)
    return results


def complete(workdir):
    manager = checkpoint_manager.create_manager(layout.checkpoint_dir(workdir), read_only=True)
    try:
        return checkpoint_manager.complete_steps(manager)
    finally:
        manager.close()


@pytest.mark.parametrize("name", sorted(KILLS))
def test_sigkill_then_rerun_resumes_from_the_last_complete_checkpoint_bit_identical(
    name, killed_runs, reference, cache_dir, capsys
):
    code, out, workdir = killed_runs[name]
    assert code == -signal.SIGKILL, out
    resume_step = KILLS[name][1]
    assert complete(workdir) == [resume_step], out
    capsys.readouterr()
    resumed = train.train_and_evaluate(tiny_config(cache_dir, **RUN), str(workdir))
    assert f"at step {resume_step}" in capsys.readouterr().out
    assert int(resumed.step) == RUN["num_train_steps"]
    assert_trees_equal(params_of(resumed), params_of(reference))
    assert_trees_equal(jax.device_get(resumed.opt_state), jax.device_get(reference.opt_state))


def test_an_unreadable_latest_checkpoint_is_set_aside_with_a_warning_and_the_previous_used(
    reference_run, cache_dir, tmp_path
):
    # The reference run keeps complete checkpoints 8 and 12; cut every file of step 12's params.
    reference, source = reference_run
    workdir = tmp_path / "run"
    shutil.copytree(source, workdir)
    latest = workdir / "checkpoints" / "12"
    for root, _, files in os.walk(latest / checkpoint_manager.PARAMS_ITEM):
        for f in files:
            path = os.path.join(root, f)
            with open(path, "r+b") as handle:
                handle.truncate(os.path.getsize(path) // 2)
    assert complete(workdir) == [8, 12]  # it still looks complete: only reading it tells
    with pytest.warns(UserWarning, match=rf"checkpoint {latest} cannot be read .*previous"):
        resumed = train.train_and_evaluate(tiny_config(cache_dir, **RUN), str(workdir))
    assert (workdir / "checkpoints" / "unreadable-12").is_dir()  # kept for inspection, out of the way
    assert_trees_equal(params_of(resumed), params_of(reference))
    assert 12 in complete(workdir)


def test_a_failing_write_keeps_the_previous_checkpoint_and_says_what_failed(
    cache_dir, tmp_path, monkeypatch, reference
):
    save_fn = ocp.JsonCheckpointHandler._save_fn

    async def disk_full_at_step_8(self, x, directory):
        if x.get("step") == 8:
            raise OSError(errno.ENOSPC, "No space left on device", str(directory))
        return await save_fn(self, x, directory)

    monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", disk_full_at_step_8)
    workdir = tmp_path / "run"
    with pytest.raises(OSError, match=r"No space left on device") as info:
        train.train_and_evaluate(tiny_config(cache_dir, **RUN), str(workdir))
    assert info.value.errno == errno.ENOSPC and "checkpoints/8." in str(info.value)  # what and where
    assert complete(workdir) == [4]
    monkeypatch.undo()
    resumed = train.train_and_evaluate(tiny_config(cache_dir, **RUN), str(workdir))
    assert_trees_equal(params_of(resumed), params_of(reference))


def test_a_workdir_of_another_model_is_refused_before_anything_is_written(reference_run, cache_dir):
    _, workdir = reference_run
    before = sorted(os.listdir(workdir / "checkpoints"))
    with pytest.raises(UserError, match=r"holds a run of a different model .*'num_features': 8.*use another"):
        train.train_and_evaluate(tiny_config(cache_dir, **RUN, model__num_features=4), str(workdir))
    assert sorted(os.listdir(workdir / "checkpoints")) == before


@pytest.mark.parametrize("options", [{}, {"skip_loss_factor": 2.0}], ids=["plain", "skipping_spikes"])
def test_non_finite_loss_names_the_step_and_values_and_keeps_the_good_checkpoints(
    options, cache_dir, tmp_path
):
    # The spike guard skips large finite losses only: a non-finite one stops the run all the same.
    config = tiny_config(
        cache_dir, learning_rate=1e30, learning_rate_schedule="step", checkpoint_every_steps=1, **options
    )
    workdir = tmp_path / "nan"
    message = r"non-finite training values at step (\d+): loss=\S+, grad_norm=\S+;.*config\.learning_rate"
    with pytest.raises(UserError, match=message) as first:
        train.train_and_evaluate(config, str(workdir))
    bad_step = int(re.search(message, str(first.value)).group(1))
    kept = complete(workdir)
    assert kept and max(kept) < bad_step
    abstract = params_of_abstract(config)
    for step in kept:
        params, _ = checkpoint_manager.restore_params(layout.checkpoint_dir(workdir), abstract, step)
        assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(params)), step
    with pytest.raises(UserError, match=re.escape(str(first.value).split(":")[0])):
        train.train_and_evaluate(config, str(workdir))


@pytest.mark.parametrize("before", ["absent", "empty"])
def test_a_run_that_fails_before_its_first_checkpoint_leaves_the_workdir_as_it_found_it(
    before, cache_dir, tmp_path
):
    config = tiny_config(
        cache_dir, learning_rate=1e30, learning_rate_schedule="step", checkpoint_every_steps=100
    )
    workdir = tmp_path / "run"
    if before == "empty":
        workdir.mkdir()
    with pytest.raises(UserError, match=r"non-finite training values at step \d+"):
        train.train_and_evaluate(config, str(workdir))
    assert os.listdir(tmp_path) == (["run"] if before == "empty" else [])
    assert before == "absent" or os.listdir(workdir) == []


def params_of_abstract(config):
    model = train.create_model(config)
    return jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0))["params"])
