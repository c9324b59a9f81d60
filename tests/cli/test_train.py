"""``edsr-jax train``: SIGKILLed twice mid-run, the rerun ends bit-identical; the multi-process
flags reach ``jax.distributed.initialize``."""

import argparse
import os
import signal
import subprocess
import sys
import time

import jax
import pytest
from support.configs import TINY, tiny_config
from support.paths import TEST_CONFIG
from support.trees import assert_trees_equal, params_of

import edsr_jax
from edsr_jax import sharding, train, train_step
from edsr_jax.cli import train as train_command
from edsr_jax.errors import UserError


@pytest.mark.slow
def test_cli_sigkill_then_rerun_is_bit_identical(tmp_path, cache_dir, compilation_cache):
    """SIGKILL `edsr-jax train` twice mid-run; the final rerun ends bit-identical."""
    overrides = {"num_train_steps": 120, "checkpoint_every_steps": 10, "log_every_steps": 10}
    reference = train.train_and_evaluate(tiny_config(cache_dir, **overrides), str(tmp_path / "ref"))
    workdir = tmp_path / "cli"
    fields = {**TINY, "data.cache_dir": cache_dir, **{k: str(v) for k, v in overrides.items()}}
    command = [
        sys.executable,
        "-m",
        "edsr_jax.cli",
        "train",
        "--config",
        TEST_CONFIG,
        "--workdir",
        str(workdir),
    ]
    command += [f"--config.{k}={v}" for k, v in fields.items()]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": compilation_cache}  # XLA_FLAGS: 8 devices

    def start_and_kill(sig, after_step):
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            folder = workdir / "checkpoints"
            if folder.exists() and any(p.isdigit() and int(p) > after_step for p in os.listdir(folder)):
                proc.send_signal(sig)
                break
            time.sleep(0.05)
        out = proc.communicate(timeout=120)[0]
        return proc.returncode, out

    code, out = start_and_kill(signal.SIGKILL, 0)  # killed after the first checkpoint, anywhere
    assert code == -signal.SIGKILL, out
    code, out = start_and_kill(signal.SIGKILL, 50)  # the resumed run, killed again later on
    assert code == -signal.SIGKILL and "resumed from" in out, out
    final = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert final.returncode == 0 and "done: step 120" in final.stdout, final.stdout + final.stderr
    assert "resumed from" in final.stdout
    _, variables = edsr_jax.load_model(workdir)
    assert_trees_equal(jax.device_get(variables["params"]), params_of(reference))


def test_cli_flags_reach_jax_distributed_initialize(monkeypatch):
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    args = parser.parse_args(
        [
            "--config",
            "c.py",
            "--workdir",
            "w",
            "--coordinator",
            "h:1234",
            "--num-processes",
            "4",
            "--process-id",
            "2",
            "--local-devices",
            "0,1",
            "--config.batch_size=8",
        ]
    )
    assert args.overrides == ["--config.batch_size=8"]
    seen = {}
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **k: seen.update(k))
    assert sharding.maybe_initialize_distributed(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
        local_device_ids=train_command.parse_device_ids(args.local_devices),
    )
    assert seen == {
        "coordinator_address": "h:1234",
        "num_processes": 4,
        "process_id": 2,
        "local_device_ids": [0, 1],
    }
    assert train_command.parse_device_ids(None) is None
    with pytest.raises(UserError, match="--local-devices must be comma-separated device ids"):
        train_command.parse_device_ids("gpu0")


def test_train_command_initializes_the_runtime_then_trains(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(
        sharding, "maybe_initialize_distributed", lambda requested, **k: calls.append(("init", requested, k))
    )

    def fake_train(config, workdir, **options):
        assert options == {"allow_other_files": False}
        calls.append(("train", config, workdir))
        return train_step.TrainState(step=6, params={}, opt_state={}, rng=None)

    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    args = parser.parse_args(
        [
            "--config",
            "test",
            "--workdir",
            "w",
            "--distributed",
            "--num-processes",
            "2",
            "--process-id",
            "1",
            "--config.seed=5",
        ]
    )
    assert train_command.run(args) == 0
    (_, requested, kwargs), (_, config, workdir) = calls
    assert requested is True and kwargs["num_processes"] == 2 and kwargs["process_id"] == 1
    assert config.seed == 5 and workdir == "w"
    assert f"done: step 6 in {os.path.abspath('w')}" in capsys.readouterr().out
