"""Reading a workdir while a trainer writes it: readers see complete steps only, never block or
break the writer, and never write or delete anything."""

import os
import subprocess
import sys
import time

import numpy as np
from support.paths import ROOT, TEST_CONFIG

import edsr_jax
from edsr_jax import cli
from edsr_jax.errors import UserError

# What a reader may be told before the first checkpoint is complete.
NOT_YET = ("does not exist", "no complete checkpoint", "no model.json", "is empty")


def trainer(workdir: str, cache: str, out: str) -> list[str]:
    """``edsr-jax train`` of configs/test.py (one device), saving its final parameters to ``out``."""
    code = (
        "import sys, numpy as np, jax; from edsr_jax import train; from edsr_jax.cli import config_flags; "
        f"c = config_flags.apply_overrides(config_flags.load_config({TEST_CONFIG!r}), "
        f"[('data.cache_dir', {cache!r})]); s = train.train_and_evaluate(c, {workdir!r}); "
        f"np.savez({out!r}, *[np.asarray(x) for x in jax.tree.leaves(jax.device_get(s.params))])"
    )
    return [sys.executable, "-c", code]


ENV = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def test_loading_and_evaluating_while_training_sees_only_complete_steps(tmp_path, benchmarks_dir):
    cache = str(tmp_path / "cache")
    reference = subprocess.run(
        trainer(str(tmp_path / "ref"), cache, str(tmp_path / "ref.npz")),
        env=ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr[-2000:]

    workdir = str(tmp_path / "run")
    writer = subprocess.Popen(
        trainer(workdir, cache, str(tmp_path / "run.npz")),
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    loaded, waited, steps_seen = 0, 0, set()
    try:
        while writer.poll() is None:
            for which in ("latest", "best"):
                try:
                    _, variables = edsr_jax.load_model(workdir, which=which)
                except UserError as e:
                    assert any(m in str(e) for m in (*NOT_YET, "has a validation score")), str(e)
                    waited += 1
                    continue
                assert np.isfinite(np.asarray(variables["params"]["head"]["kernel"])).all()
                loaded += 1
            if os.path.isdir(os.path.join(workdir, "checkpoints")):
                steps_seen |= {d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()}
            time.sleep(0.05)
        args = ["--data-dir", benchmarks_dir, "--datasets", "Set5", "--scales", "2", "--no-progress"]
        assert cli.main(["eval", *args, "--checkpoint", workdir]) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
        log = writer.stdout.read()
    assert writer.returncode == 0, log[-3000:]
    assert loaded > 0, (loaded, waited)  # (the loop read checkpoints while they were being written)
    assert "deleted the incomplete" not in log and "unreadable" not in log
    assert not [d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.startswith("unreadable")]
    ours, theirs = np.load(tmp_path / "run.npz"), np.load(tmp_path / "ref.npz")
    for name in theirs.files:  # the readers did not change what the trainer computed
        np.testing.assert_array_equal(ours[name], theirs[name])
    assert steps_seen  # (and saw step folders appear)
