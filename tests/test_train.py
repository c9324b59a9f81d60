"""Training: the whole loop, exact resume (also after SIGTERM/SIGKILL), sharding, MDSR masking."""

import glob
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import edsr_jax
from edsr_jax import checkpointing, models, sharding, train
from edsr_jax.commands import train as train_command
from edsr_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_CONFIG = os.path.join(ROOT, "configs", "test.py")
# A tiny run: B1 F8 on 12x12 LR patches, batch 8 (one example per fake device).
TINY = {
    "model.num_blocks": "1", "model.num_features": "8", "batch_size": "8", "patch_size": "12",
    "num_train_steps": "6", "log_every_steps": "2", "checkpoint_every_steps": "2",
    "eval_every_steps": "0", "eval.num_images": "1", "eval.image_crop": "16",
}  # fmt: skip


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One decoded-image cache for every run of this module."""
    return str(tmp_path_factory.mktemp("image_cache"))


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """A persistent XLA cache for this module: the runs share most compiled programs."""
    path = str(tmp_path_factory.mktemp("xla_cache"))
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", path)
    yield path
    jax.config.update("jax_compilation_cache_dir", before)


def tiny_config(cache_dir, **overrides):
    fields = {
        **TINY,
        "data.cache_dir": cache_dir,
        **{k.replace("__", "."): str(v) for k, v in overrides.items()},
    }
    config = train_command.load_config(TEST_CONFIG)
    return train_command.apply_overrides(config, list(fields.items()))


def random_params(model, seed):
    """Parameters of the right shapes without compiling the initialiser (seconds on a busy CPU)."""
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0))["params"])
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.uniform(-0.2, 0.2, a.shape).astype(np.float32), shapes)


def params_of(state):
    return jax.tree.map(np.asarray, jax.device_get(state.params))


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_train_and_evaluate_writes_checkpoints_events_and_a_loadable_model(tmp_path, cache_dir, capsys):
    workdir = str(tmp_path / "run")
    state = train.train_and_evaluate(tiny_config(cache_dir), workdir)
    assert int(state.step) == 6
    steps = sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit())
    assert steps == [4, 6]  # every 2 steps, the last 3 kept (keep_checkpoints=2: 4 and 6; 6 scored)
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
    out = capsys.readouterr().out
    assert "step 6/6  loss" in out and "val/psnr_x2" in out
    model, variables = edsr_jax.load_model(workdir)
    assert models.model_spec(model)["num_features"] == 8
    assert_trees_equal(jax.device_get(variables["params"]), params_of(state))
    _, best = edsr_jax.load_model(workdir, which="best")  # step 6 is the only scored checkpoint
    assert_trees_equal(jax.device_get(best["params"]), params_of(state))


def test_resume_after_sigterm_is_bit_identical(tmp_path, cache_dir, monkeypatch, capsys):
    reference = train.train_and_evaluate(
        tiny_config(cache_dir, lr_schedule="step", lr_decay_steps=2), str(tmp_path / "a")
    )
    config = tiny_config(cache_dir, lr_schedule="step", lr_decay_steps=2)
    workdir = str(tmp_path / "b")
    # SIGTERM arriving during step 3: the guard answers at the step boundary.
    should_stop = checkpointing.PreemptionGuard.should_stop

    def sigterm_during_step_3(self, step):  # a real SIGTERM, delivered while step 3 runs
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return should_stop(self, step)

    monkeypatch.setattr(checkpointing.PreemptionGuard, "should_stop", sigterm_during_step_3)
    stopped = train.train_and_evaluate(config, workdir)
    assert int(stopped.step) == 3
    assert 3 in checkpointing.complete_steps(
        checkpointing.create_manager(os.path.join(workdir, "checkpoints"))
    )
    monkeypatch.undo()
    capsys.readouterr()
    resumed = train.train_and_evaluate(config, workdir)
    assert int(resumed.step) == 6
    out = capsys.readouterr().out
    assert "resumed from" in out and "config differs" not in out  # same config: no warning
    assert_trees_equal(params_of(resumed), params_of(reference))
    assert_trees_equal(jax.device_get(resumed.opt_state), jax.device_get(reference.opt_state))


def test_one_step_on_8_devices_equals_one_device_and_the_schedule_reads_the_state_step():
    config = tiny_config("")
    model = train.create_model(config)
    tx = train.create_optimizer(config, model)
    lr_fn = train.create_learning_rate_fn(config)
    rng = np.random.default_rng(0)
    batch = {
        "lr": rng.integers(0, 256, (8, 6, 6, 3), np.uint8),
        "hr": rng.integers(0, 256, (8, 12, 12, 3), np.uint8),
    }
    state8, _ = train.create_train_state(model, tx, sharding.create_mesh(), jax.random.PRNGKey(0))
    state8 = state8.replace(step=jnp.asarray(7, jnp.int32))  # as if resumed at step 7
    results = []
    for n in (1, 8):
        mesh = sharding.create_mesh(jax.devices()[:n])
        shardings = jax.tree.map(lambda _, m=mesh: sharding.replicated(m), state8)
        state = jax.device_put(jax.device_get(state8), shardings)  # the same start on both meshes
        step = train.compile_train_step(model, tx, lr_fn, mesh, shardings, scale=2)
        placed = {k: jax.device_put(v, sharding.batch_sharding(mesh)) for k, v in batch.items()}
        state, first = step(state, placed)
        state, metrics = step(state, placed)
        assert len(state.params["head"]["kernel"].sharding.device_set) == n
        assert int(state.step) == 9
        assert (
            float(first["learning_rate"]) == pytest.approx(float(lr_fn(7))) != pytest.approx(float(lr_fn(0)))
        )
        results.append((params_of(state), float(metrics["loss"])))
    (p1, loss1), (p8, loss8) = results
    assert loss8 == pytest.approx(loss1, rel=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bfloat16_computes_in_bf16_and_keeps_float32_state():
    config = tiny_config("", dtype="bfloat16")
    model = train.create_model(config)
    assert model.dtype == jnp.bfloat16
    tx = train.create_optimizer(config, model)
    mesh = sharding.create_mesh()
    # Parameters do not depend on the compute dtype: reuse the (already compiled) float32 init.
    state, shardings = train.create_train_state(model.clone(dtype=None), tx, mesh, jax.random.PRNGKey(0))
    step = train.compile_train_step(model, tx, train.create_learning_rate_fn(config), mesh, shardings, 2)
    rng = np.random.default_rng(0)
    batch = {
        "lr": rng.integers(0, 256, (8, 6, 6, 3), np.uint8),
        "hr": rng.integers(0, 256, (8, 12, 12, 3), np.uint8),
    }
    hlo = step.lower(state, batch).as_text()
    assert "bf16" in hlo and "convolution" in hlo
    state, metrics = step(state, batch)
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
    assert {a.dtype for a in jax.tree.leaves((state.params, state.opt_state)) if a.ndim} == {
        jnp.dtype("float32")
    }


def test_mdsr_step_leaves_other_scales_bit_identical():
    config = tiny_config("", model__arch="mdsr", scales="2,4")
    model = train.create_model(config)
    tx = train.create_optimizer(config, model)
    lr_fn = train.create_learning_rate_fn(config)
    mesh = sharding.create_mesh(jax.devices()[:1])
    params = random_params(model, 0)
    state = train.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(0)
    )
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    state = jax.device_put(state, shardings)
    rng = np.random.default_rng(1)

    def step(state, scale):
        batch = {"lr": rng.integers(0, 256, (2, 6, 6, 3), np.uint8)}
        batch["hr"] = rng.integers(0, 256, (2, 6 * scale, 6 * scale, 3), np.uint8)
        return train.compile_train_step(model, tx, lr_fn, mesh, shardings, scale)(state, batch)[0]

    state = step(step(state, 4), 4)  # x4's Adam moments are non-zero now
    before = jax.device_get(state)  # (a host copy: the step donates its input)
    after = jax.device_get(step(state, 2))
    groups_before, groups_after = before.opt_state.inner_states, after.opt_state.inner_states
    # x4's Adam state (moments and count) and parameters stay bit-identical through an x2 step.
    assert_trees_equal(groups_after["x4"], groups_before["x4"])
    assert np.abs(jax.tree.leaves(groups_before["x4"].inner_state.mu)[0]).max() > 0
    for name in before.params:
        old, new = jax.tree.leaves(before.params[name]), jax.tree.leaves(after.params[name])
        if train.param_group(name) == "x4":
            assert_trees_equal(new, old)
        else:  # the shared trunk and x2's own modules
            assert all(not np.array_equal(x, y) for x, y in zip(old, new, strict=True)), name
    assert (
        int(groups_after["x2"].inner_state.count) == 1 and int(groups_after["shared"].inner_state.count) == 3
    )


def test_init_from_x2_copies_matching_tensors_into_x4(tmp_path, cache_dir, capsys):
    x2 = train.create_model(tiny_config(cache_dir))
    x2_params = random_params(x2, 1)
    from edsr_jax import checkpoint

    checkpoint.save_model(tmp_path / "x2", x2, {"params": x2_params})
    x4 = train.create_model(tiny_config(cache_dir, scales="4"))
    target = random_params(x4, 2)
    params, copied, not_copied = train.copy_matching(target, train.load_init_params(str(tmp_path / "x2")))
    assert sorted(not_copied) == ["upsample/conv_1/bias", "upsample/conv_1/kernel"]
    assert "upsample/conv_0/kernel" in copied and "tail/kernel" in copied and len(copied) == 12
    np.testing.assert_array_equal(
        params["block_0"]["conv1"]["kernel"], x2_params["block_0"]["conv1"]["kernel"]
    )
    np.testing.assert_array_equal(
        params["upsample"]["conv_1"]["kernel"], target["upsample"]["conv_1"]["kernel"]
    )
    # Through the program: a fresh workdir starts from the copied tensors.
    config = tiny_config(cache_dir, scales="4", init_from=str(tmp_path / "x2"), num_train_steps=0)
    state = train.train_and_evaluate(config, str(tmp_path / "x4"))
    np.testing.assert_array_equal(np.asarray(state.params["head"]["kernel"]), x2_params["head"]["kernel"])
    assert "copied 12 tensors; not copied (kept fresh): upsample/conv_1/bias" in capsys.readouterr().out


def test_non_finite_loss_stops_with_the_step_and_keeps_good_checkpoints(tmp_path, cache_dir):
    config = tiny_config(cache_dir, learning_rate=1e30, lr_schedule="step", checkpoint_every_steps=1)
    workdir = str(tmp_path / "nan")
    with pytest.raises(RuntimeError, match=r"non-finite training values at step (\d+): loss=") as info:
        train.train_and_evaluate(config, workdir)
    bad_step = int(info.value.args[0].split("at step ")[1].split(":")[0])
    manager = checkpointing.create_manager(os.path.join(workdir, "checkpoints"), read_only=True)
    assert max(checkpointing.complete_steps(manager), default=0) < bad_step


def test_batch_not_divisible_by_devices_names_the_numbers():
    with pytest.raises(
        ValueError, match=r"batch_size=12 must be a positive multiple of the number of devices \(8"
    ):
        sharding.check_batch_size(12, sharding.create_mesh())


def test_config_overrides_convert_types_and_reject_unknown_fields():
    config = train_command.load_config(TEST_CONFIG)
    pairs = train_command.split_overrides(
        ["--config.batch_size=32", "--config.scales", "2,3,4", "--config.eval.self_ensemble=true",
         "--config.learning_rate=2e-4", "--config.model.arch=mdsr"]
    )  # fmt: skip
    config = train_command.apply_overrides(config, pairs)
    assert config.batch_size == 32 and config.scales == (2, 3, 4) and config.eval.self_ensemble is True
    assert config.learning_rate == 2e-4 and config.model.arch == "mdsr"
    with pytest.raises(UserError, match="unknown config field --config.batch_sise.*did you mean batch_size"):
        train_command.apply_overrides(config, [("batch_sise", "3")])
    with pytest.raises(UserError, match="expected a int like 32"):
        train_command.apply_overrides(config, [("batch_size", "many")])


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
