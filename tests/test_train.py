"""Training (edsr_jax.train): the whole loop, exact resume (also after SIGTERM), sharding, MDSR
masking, init_from, and a device-resident, donated train step."""

import glob
import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from support.configs import tiny_config
from support.trees import assert_trees_equal, params_of, random_params

import edsr_jax
from edsr_jax import config_checks, models, optim, sharding, train, train_step
from edsr_jax.checkpoint import exported, layout, preemption
from edsr_jax.checkpoint import manager as checkpoint_manager
from edsr_jax.errors import UserError

# The runs of this module share most compiled programs through a persistent XLA cache.
pytestmark = pytest.mark.usefixtures("compilation_cache")


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
        tiny_config(cache_dir, learning_rate_schedule="step", learning_rate_decay_steps=2),
        str(tmp_path / "a"),
    )
    config = tiny_config(cache_dir, learning_rate_schedule="step", learning_rate_decay_steps=2)
    workdir = str(tmp_path / "b")
    # SIGTERM arriving during step 3: the guard answers at the step boundary.
    should_stop = preemption.PreemptionGuard.should_stop

    def sigterm_during_step_3(self, step):  # a real SIGTERM, delivered while step 3 runs
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return should_stop(self, step)

    monkeypatch.setattr(preemption.PreemptionGuard, "should_stop", sigterm_during_step_3)
    stopped = train.train_and_evaluate(config, workdir)
    assert int(stopped.step) == 3
    assert 3 in checkpoint_manager.complete_steps(
        checkpoint_manager.create_manager(os.path.join(workdir, "checkpoints"))
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
    tx = optim.create_optimizer(config, model)
    learning_rate_fn = optim.create_learning_rate_fn(config)
    rng = np.random.default_rng(0)
    batch = {
        "low_res": rng.integers(0, 256, (8, 6, 6, 3), np.uint8),
        "high_res": rng.integers(0, 256, (8, 12, 12, 3), np.uint8),
    }
    state8, _ = train_step.create_train_state(model, tx, sharding.create_mesh(), jax.random.PRNGKey(0))
    state8 = state8.replace(step=jnp.asarray(7, jnp.int32))  # as if resumed at step 7
    results = []
    for n in (1, 8):
        mesh = sharding.create_mesh(jax.devices()[:n])
        shardings = jax.tree.map(lambda _, m=mesh: sharding.replicated(m), state8)
        state = jax.device_put(jax.device_get(state8), shardings)  # the same start on both meshes
        step = train_step.compile_train_step(model, tx, learning_rate_fn, mesh, shardings, scale=2)
        placed = {k: jax.device_put(v, sharding.batch_sharding(mesh)) for k, v in batch.items()}
        state, first = step(state, placed)
        state, metrics = step(state, placed)
        assert len(state.params["head"]["kernel"].sharding.device_set) == n
        assert int(state.step) == 9
        assert (
            float(first["learning_rate"])
            == pytest.approx(float(learning_rate_fn(7)))
            != pytest.approx(float(learning_rate_fn(0)))
        )
        results.append((params_of(state), float(metrics["loss"])))
    (p1, loss1), (p8, loss8) = results
    assert loss8 == pytest.approx(loss1, rel=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_bfloat16_computes_in_bf16_and_keeps_float32_state():
    config = tiny_config("", precision="bf16")
    model = train.create_model(config)
    assert model.dtype == jnp.bfloat16
    tx = optim.create_optimizer(config, model)
    mesh = sharding.create_mesh()
    # Parameters do not depend on the compute dtype: reuse the (already compiled) float32 init.
    state, shardings = train_step.create_train_state(model.clone(dtype=None), tx, mesh, jax.random.PRNGKey(0))
    step = train_step.compile_train_step(model, tx, optim.create_learning_rate_fn(config), mesh, shardings, 2)
    rng = np.random.default_rng(0)
    batch = {
        "low_res": rng.integers(0, 256, (8, 6, 6, 3), np.uint8),
        "high_res": rng.integers(0, 256, (8, 12, 12, 3), np.uint8),
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
    tx = optim.create_optimizer(config, model)
    learning_rate_fn = optim.create_learning_rate_fn(config)
    mesh = sharding.create_mesh(jax.devices()[:1])
    params = random_params(model, 0)
    state = train_step.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(0)
    )
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    state = jax.device_put(state, shardings)
    rng = np.random.default_rng(1)

    def step(state, scale):
        batch = {"low_res": rng.integers(0, 256, (2, 6, 6, 3), np.uint8)}
        batch["high_res"] = rng.integers(0, 256, (2, 6 * scale, 6 * scale, 3), np.uint8)
        return train_step.compile_train_step(model, tx, learning_rate_fn, mesh, shardings, scale)(
            state, batch
        )[0]

    state = step(step(state, 4), 4)  # x4's Adam moments are non-zero now
    before = jax.device_get(state)  # (a host copy: the step donates its input)
    after = jax.device_get(step(state, 2))
    groups_before, groups_after = before.opt_state.inner_states, after.opt_state.inner_states
    # x4's Adam state (moments and count) and parameters stay bit-identical through an x2 step.
    assert_trees_equal(groups_after["x4"], groups_before["x4"])
    assert np.abs(jax.tree.leaves(groups_before["x4"].inner_state.mu)[0]).max() > 0
    for name in before.params:
        old, new = jax.tree.leaves(before.params[name]), jax.tree.leaves(after.params[name])
        if optim.param_group(name) == "x4":
            assert_trees_equal(new, old)
        else:  # the shared trunk and x2's own modules
            assert all(not np.array_equal(x, y) for x, y in zip(old, new, strict=True)), name
    assert (
        int(groups_after["x2"].inner_state.count) == 1 and int(groups_after["shared"].inner_state.count) == 3
    )


def test_init_from_x2_starts_x4_from_the_matching_tensors(tmp_path, cache_dir, capsys):
    # (which tensors match: tests/models/test_params.py::test_copy_matching_...)
    x2 = train.create_model(tiny_config(cache_dir))
    x2_params = random_params(x2, 1)
    exported.save_model(tmp_path / "x2", x2, {"params": x2_params})
    x2_loaded, note = train.load_init_params(str(tmp_path / "x2"))
    assert_trees_equal(jax.device_get(x2_loaded), x2_params)
    assert note == ""  # (an exported model, not a workdir)
    x4 = train.create_model(tiny_config(cache_dir, scales="4"))
    target = random_params(x4, 2)
    params, copied, not_copied = models.copy_matching(target, x2_loaded)
    assert sorted(not_copied) == ["upsample/conv_1/bias", "upsample/conv_1/kernel"] and len(copied) == 12
    # Through the program: a fresh workdir starts from the copied tensors.
    config = tiny_config(cache_dir, scales="4", init_from=str(tmp_path / "x2"), num_train_steps=0)
    state = train.train_and_evaluate(config, str(tmp_path / "x4"))
    np.testing.assert_array_equal(np.asarray(state.params["head"]["kernel"]), x2_params["head"]["kernel"])
    np.testing.assert_array_equal(
        np.asarray(state.params["block_0"]["conv1"]["kernel"]), x2_params["block_0"]["conv1"]["kernel"]
    )
    assert "copied 12 tensors; not copied (kept fresh): upsample/conv_1/bias" in capsys.readouterr().out


def write_run(workdir, model, scores):
    """A training workdir of ``model`` with a checkpoint per step of ``scores`` (step -> val_psnr or
    None), the parameters of step ``k`` being ``random_params(model, k)``."""
    layout.prepare_workdir(str(workdir), models.model_spec(model), {})
    ckpt = checkpoint_manager.create_manager(layout.checkpoint_dir(workdir), keep=len(scores))
    for step, score in scores.items():
        state = train_step.TrainState(
            step=jnp.asarray(step), params=random_params(model, step), opt_state={}, rng=jax.random.PRNGKey(0)
        )
        metrics = None if score is None else {checkpoint_manager.BEST_METRIC: score}
        checkpoint_manager.save(ckpt, state, metrics=metrics)
    ckpt.close()


def test_init_from_a_workdir_takes_its_best_checkpoint_else_its_latest(tmp_path, cache_dir, capsys):
    # As the official --pre_train takes model_best.pt: the best by val_psnr, not the latest.
    model = train.create_model(tiny_config(cache_dir))
    write_run(tmp_path / "scored", model, {2: None, 4: 33.1, 6: 32.5, 8: None})
    params, note = train.load_init_params(str(tmp_path / "scored"))
    assert_trees_equal(jax.device_get(params), random_params(model, 4))
    assert note == "step 4, best by val_psnr 33.10 dB"
    write_run(tmp_path / "unscored", model, {2: None, 4: None})
    params, note = train.load_init_params(str(tmp_path / "unscored"))
    assert_trees_equal(jax.device_get(params), random_params(model, 4))
    assert note == "step 4, the latest: no checkpoint was scored"
    # Through the program: a fresh run starts from step 4 of "scored" and says so.
    config = tiny_config(cache_dir, init_from=str(tmp_path / "scored"), num_train_steps=0)
    state = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert_trees_equal(params_of(state), random_params(model, 4))
    out = capsys.readouterr().out
    expected = f"init_from {tmp_path / 'scored'} (step 4, best by val_psnr 33.10 dB): copied 12 tensors; "
    assert expected + "not copied (kept fresh): none" in out


def test_config_change_message_names_every_difference():
    changed = [
        ("batch_size", 16, 32),
        ("log_every_steps", 10, None),
        ("new_field", None, "x"),
        ("seed", 0, 1),
    ]
    message = config_checks.change_message(changed)
    assert message.startswith("warning: this config differs") and "seed 0 -> 1" in message
    assert "batch_size 16 -> 32" in message and "more" not in message
    many = config_checks.change_message([(f"k{i}", i, i + 1) for i in range(15)])
    assert many.count(" -> ") == 12 and "and 3 more" in many


def test_flatten_config_gives_dotted_keys_and_json_values():
    config = ml_collections.ConfigDict({"a": 1, "b": {"c": (2, 3), "d": None, "e": "x"}, "f": True})
    assert config_checks.flatten(config.to_dict()) == {
        "a": 1,
        "b.c": "(2, 3)",
        "b.d": "None",
        "b.e": "x",
        "f": True,
    }


def test_create_model_names_the_config_field_of_a_bad_value():
    with pytest.raises(
        UserError, match=r"config\.precision must be one of auto, fp32, tf32, bf16, got 'float16'"
    ):
        train.create_model(tiny_config("", dtype="float16"))
    with pytest.raises(UserError, match=r"config\.scales \(5,\) has unsupported scales \[5\]"):
        train.create_model(tiny_config("", scales="5"))
    with pytest.raises(UserError, match=r"an EDSR upscales by one factor, but config\.scales is \(2, 3\)"):
        train.create_model(tiny_config("", scales="2,3"))
    arch_message = r"config\.model\.arch must be 'edsr', 'mdsr' or 'srresnet', got 'srgan'"
    with pytest.raises(UserError, match=arch_message):
        train.create_model(tiny_config("", model__arch="srgan"))
    mdsr = train.create_model(tiny_config("", model__arch="mdsr", scales="2,4"))
    assert isinstance(mdsr, models.MDSR) and mdsr.scales == (2, 4) and mdsr.num_features == 8


# --- the train step: device-resident, no host transfers, donated state -------------------------


@pytest.fixture(scope="module")
def tiny_step():
    model = models.EDSR(scale=2, num_blocks=1, num_features=8)
    cfg = ml_collections.ConfigDict(dict(adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8))
    tx = optim.create_optimizer(cfg, model)
    mesh = sharding.create_mesh(jax.devices()[:2])  # data-parallel, and quick to compile
    # Random numpy parameters of the right shapes: compiling the initialiser costs seconds on CPU.
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0))["params"])
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: rng.uniform(-0.1, 0.1, a.shape).astype(np.float32), shapes)
    state = train_step.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(1)
    )
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    state = jax.device_put(state, shardings)
    step = train_step.compile_train_step(model, tx, optax.constant_schedule(1e-3), mesh, shardings, 2)
    n = mesh.devices.size
    batch = sharding.make_global_batch(
        {
            "low_res": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
            "high_res": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
        },
        mesh,
    )
    return step, state, batch


def test_train_step_makes_no_host_transfers(tiny_step):
    step, state, batch = tiny_step
    state = jax.tree.map(jnp.copy, state)  # keep the fixture's state (the step donates its input)
    state, _ = jax.block_until_ready(step(state, batch))  # compile outside the guard
    with jax.transfer_guard("disallow"):
        for _ in range(2):
            state, metrics = step(state, batch)
        jax.block_until_ready((state, metrics))
    assert int(jax.device_get(state.step)) == 3


def test_train_step_donates_the_state(tiny_step):
    step, state, batch = tiny_step
    state = jax.tree.map(jnp.copy, state)
    old_leaves = jax.tree.leaves(state)
    new_state, _ = step(state, batch)
    jax.block_until_ready(new_state)
    assert all(leaf.is_deleted() for leaf in old_leaves)
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(new_state))
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(batch))


def _relative_difference(a, b) -> float:
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.linalg.norm(x - y) / np.linalg.norm(y)) for x, y in leaves)


def test_a_run_resumed_on_other_devices_continues_with_the_same_batches(tmp_path, cache_dir, capsys):
    # configs/test.py: 30 steps on 4 devices, resumed on 2 devices to 60, against 60 steps on 4.
    from support.paths import TEST_CONFIG

    from edsr_jax.cli import config_flags

    def config():
        return config_flags.apply_overrides(
            config_flags.load_config(TEST_CONFIG), [("data.cache_dir", cache_dir), ("eval_every_steps", "0")]
        )

    devices = jax.devices()
    uninterrupted = train.train_and_evaluate(config(), str(tmp_path / "a"), devices=devices[:4])
    workdir = str(tmp_path / "b")
    first = train.train_and_evaluate(config(), workdir, devices=devices[:4], on_step=lambda step: step == 30)
    assert int(first.step) == 30
    capsys.readouterr()
    resumed = train.train_and_evaluate(config(), workdir, devices=devices[:2])
    out = capsys.readouterr().out
    assert "at step 30" in out and "2 device(s)" in out and "batch sampler" not in out
    assert int(resumed.step) == 60
    # The same batches; only the order of the gradient sums over devices differs.
    assert _relative_difference(params_of(resumed), params_of(uninterrupted)) < 1e-4


def test_training_evaluation_and_tensorboard_run_without_tensorflow(tmp_path):
    import subprocess
    import sys
    import textwrap

    from support.paths import ROOT, TESTS

    code = textwrap.dedent(
        f"""
        import sys
        from support.no_tensorflow import hide_tensorflow
        hide_tensorflow()
        from edsr_jax import cli
        code = cli.main(["train", "--config", "test", "--workdir", {str(tmp_path / "w")!r},
                         "--config.data.cache_dir", {str(tmp_path / "cache")!r}])
        print("tensorflow modules:", sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
        sys.exit(code)
        """
    )
    env = {**os.environ, "PYTHONPATH": TESTS, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "tensorflow modules: []" in out.stdout
    assert "step 60/60" in out.stdout and "val/psnr_x2" in out.stdout and "eta" in out.stdout
    from tensorboard.backend.event_processing import event_accumulator as ea

    events = ea.EventAccumulator(str(tmp_path / "w"), size_guidance={ea.IMAGES: 0, ea.SCALARS: 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/data_wait", "val/psnr_x2", "val/ssim_x2"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [10, 20, 30, 40, 50, 60]
    assert tags["images"] == ["val/x2"] and "_hparams_/session_start_info" in events.PluginTagToContent(
        "hparams"
    )


def test_resume_warnings_ignore_fields_without_effect_and_new_fields_at_their_old_behaviour():
    changed = [
        ("batch_size", 16, 32),
        ("compilation_cache_dir", "", "auto"),  # where compiled programs are kept: no effect
        ("data.threads", 0, 4),
        ("ema_decay", None, 0.0),  # a run older than the field computed exactly this
        ("skip_loss_factor", None, 3.0),  # ...but not this
        ("loss", "l1", "l2"),
    ]
    assert config_checks.changes_that_matter(changed) == [
        ("batch_size", 16, 32),
        ("skip_loss_factor", None, 3.0),
        ("loss", "l1", "l2"),
    ]
