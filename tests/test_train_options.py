"""Training options beyond the paper (edsr_jax.train with edsr_jax.optim's guards): the EMA of the
weights, gradient clipping, loss-spike skipping and the L2 loss; exact resume with all of them."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support.configs import tiny_config
from support.trees import assert_trees_equal

import edsr_jax
from edsr_jax import optim, train, train_step
from edsr_jax.checkpoint import layout
from edsr_jax.checkpoint import manager as checkpoint_manager
from edsr_jax.data import pipeline
from edsr_jax.errors import UserError

pytestmark = pytest.mark.usefixtures("compilation_cache")

# Every option on: EMA, clipping (a norm the tiny model's gradients exceed) and spike skipping.
GUARDED = dict(ema_decay=0.9, grad_clip_norm=1.0, skip_loss_factor=2.0)


def host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def test_resume_with_ema_clipping_and_spike_skipping_is_bit_identical(tmp_path, cache_dir, capsys):
    steps = optim.SKIP_WARMUP_STEPS + 4  # the guard judges the last steps, across the restart
    config = tiny_config(cache_dir, num_train_steps=steps, **GUARDED)
    reference = train.train_and_evaluate(config, str(tmp_path / "a"))
    workdir = str(tmp_path / "b")
    stopped = train.train_and_evaluate(config, workdir, on_step=lambda step: step == steps - 3)
    assert int(stopped.step) == steps - 3
    resumed = train.train_and_evaluate(config, workdir)
    assert int(resumed.step) == steps
    for field in ("params", "opt_state", "ema_params", "loss_stats", "rng"):
        assert_trees_equal(host(getattr(resumed, field)), host(getattr(reference, field)))
    assert int(reference.loss_stats["count"]) == steps  # no spike in normal batches
    # The EMA is a different set of weights, and the readers take it unless told otherwise.
    ema, raw = host(reference.ema_params), host(reference.params)
    assert not np.allclose(jax.tree.leaves(ema)[0], jax.tree.leaves(raw)[0])
    _, auto = edsr_jax.load_model(workdir)
    _, raw_read = edsr_jax.load_model(workdir, weights="raw")
    assert_trees_equal(host(auto["params"]), ema)
    assert_trees_equal(host(raw_read["params"]), raw)


def test_readers_refuse_ema_weights_of_a_run_without_them(tmp_path, cache_dir):
    workdir = str(tmp_path / "plain")
    state = train.train_and_evaluate(tiny_config(cache_dir, num_train_steps=2), workdir)
    assert state.ema_params is None
    _, auto = edsr_jax.load_model(workdir)  # auto: the raw weights
    assert_trees_equal(host(auto["params"]), host(state.params))
    with pytest.raises(UserError, match=r"has no EMA weights \(the run had config\.ema_decay = 0\)"):
        edsr_jax.load_model(workdir, weights="ema")
    with pytest.raises(UserError, match=r"weights must be one of \('auto', 'ema', 'raw'\), got 'best'"):
        edsr_jax.load_model(workdir, weights="best")


def test_a_loss_spike_is_skipped_logged_and_leaves_the_state_as_it_was(
    tmp_path, cache_dir, monkeypatch, capsys
):
    spike_step = optim.SKIP_WARMUP_STEPS + 3
    real_iterator = pipeline.create_train_iterator

    def with_a_spike(config, *, start_step=0, rows=None):
        for step, batch in enumerate(real_iterator(config, start_step=start_step, rows=rows), start_step + 1):
            if step == spike_step:  # black inputs, white targets: a loss far above the running mean
                batch = dict(
                    batch,
                    low_res=np.zeros_like(batch["low_res"]),
                    high_res=np.full_like(batch["high_res"], 255),
                )
            yield batch

    monkeypatch.setattr(pipeline, "create_train_iterator", with_a_spike)
    config = tiny_config(
        cache_dir, num_train_steps=spike_step + 1, checkpoint_every_steps=1, keep_checkpoints=20, **GUARDED
    )
    workdir = str(tmp_path / "spike")
    state = train.train_and_evaluate(config, workdir)
    out = capsys.readouterr().out
    assert f"step {spike_step}: skipped the update: loss " in out
    assert out.count("skipped the update") == 1
    assert int(state.step) == spike_step + 1  # the skipped step is counted
    assert int(state.loss_stats["count"]) == spike_step  # ...but not added to the running mean

    def read(step, weights):
        params, _, _ = checkpoint_manager.restore_variables(
            layout.checkpoint_dir(workdir), {"params": host(state.params)}, step, weights=weights
        )
        return host(params["params"])

    for weights in ("raw", "ema"):
        assert_trees_equal(read(spike_step, weights), read(spike_step - 1, weights))
        after = jax.tree.leaves(read(spike_step + 1, weights))[0]
        assert not np.array_equal(after, jax.tree.leaves(read(spike_step, weights))[0])


def test_spike_guard_judges_against_the_bias_corrected_running_mean():
    losses = [40.0, 35.0, 30.0, 28.0, 26.0, 25.0, 24.0, 23.0, 22.0, 21.0, 20.0]
    stats = optim.init_loss_stats()
    for loss in losses:
        stats = optim.update_loss_stats(stats, jnp.float32(loss), jnp.bool_(True))
    # Hand computation: the EMA of the losses with decay d from 0, divided by 1 - d^n.
    d, ema = optim.LOSS_MEAN_DECAY, 0.0
    for loss in losses:
        ema = d * ema + (1 - d) * loss
    mean = ema / (1 - d ** len(losses))
    np.testing.assert_allclose(float(optim.running_mean_loss(stats)), mean, rtol=1e-6)
    assert 25.0 < mean < 30.0  # near the plain mean (26.7): the correction removes the pull to 0
    assert bool(optim.is_spike(jnp.float32(2.1 * mean), stats, 2.0))
    assert not bool(optim.is_spike(jnp.float32(1.9 * mean), stats, 2.0))
    assert not bool(optim.is_spike(jnp.float32(np.nan), stats, 2.0))  # NaN stops the run instead
    assert not bool(optim.is_spike(jnp.float32(1e9), stats, 0.0))  # off
    young = optim.update_loss_stats(optim.init_loss_stats(), jnp.float32(1.0), jnp.bool_(True))
    assert not bool(optim.is_spike(jnp.float32(1e9), young, 2.0))  # no verdict during the warm-up
    skipped = optim.update_loss_stats(stats, jnp.float32(1e9), jnp.bool_(False))
    assert_trees_equal(host(skipped), host(stats))


def test_clipping_scales_the_gradients_to_the_global_norm():
    rng = np.random.default_rng(0)
    grads = {
        "a": rng.normal(size=(3, 4)).astype(np.float32),
        "b": {"c": rng.normal(size=5).astype(np.float32)},
    }
    norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads)))
    clipped, reported = optim.clip_by_global_norm(grads, norm / 4)
    np.testing.assert_allclose(float(reported), norm, rtol=1e-6)  # the norm before clipping
    for g, c in zip(jax.tree.leaves(grads), jax.tree.leaves(clipped), strict=True):
        np.testing.assert_allclose(np.asarray(c), g / 4, rtol=1e-5)
    unchanged, _ = optim.clip_by_global_norm(grads, norm * 2)
    assert_trees_equal(host(unchanged), grads)
    assert optim.clip_by_global_norm(grads, 0.0)[0] is grads  # off


def test_l2_loss_is_the_mean_squared_error_and_configs_name_it():
    rng = np.random.default_rng(1)
    sr, hr = rng.uniform(0, 255, (2, 4, 4, 3)), rng.integers(0, 256, (2, 4, 4, 3))
    np.testing.assert_allclose(
        float(train_step.l2_loss(jnp.asarray(sr), jnp.asarray(hr))), np.mean((sr - hr) ** 2), rtol=1e-5
    )
    with pytest.raises(UserError, match=r"loss='huber' \(must be one of l1, l2\)"):
        train.train_and_evaluate(tiny_config("", loss="huber"), "/nonexistent/never-created")
    with pytest.raises(UserError, match=r"ema_decay=1\.0 \(must be in \[0, 1\)"):
        train.train_and_evaluate(tiny_config("", ema_decay=1.0), "/nonexistent/never-created")
    with pytest.raises(
        UserError, match=r"skip_loss_factor=0\.5 \(must be 0 \(off\) or a finite number > 1\)"
    ):
        train.train_and_evaluate(tiny_config("", skip_loss_factor=0.5), "/nonexistent/never-created")
    assert not os.path.exists("/nonexistent/never-created")


def test_srresnet_trains_with_l2_keeps_batch_norm_averages_and_resumes_bit_identical(
    tmp_path, cache_dir, capsys
):
    config = tiny_config(cache_dir, model__arch="srresnet", loss="l2")
    reference = train.train_and_evaluate(config, str(tmp_path / "a"))
    workdir = str(tmp_path / "b")
    train.train_and_evaluate(config, workdir, on_step=lambda step: step == 3)
    resumed = train.train_and_evaluate(config, workdir)
    assert "val/psnr_x2" in capsys.readouterr().out  # validated with the running averages
    for field in ("params", "opt_state", "batch_stats"):
        assert_trees_equal(host(getattr(resumed, field)), host(getattr(reference, field)))
    fresh = jax.tree.leaves(host(train_step.create_train_state(*_srresnet_parts(config))[0].batch_stats))
    trained = jax.tree.leaves(host(reference.batch_stats))
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, trained, strict=True))  # they moved
    model, variables = edsr_jax.load_model(workdir)
    assert type(model).__name__ == "SRResNet"
    assert_trees_equal(host(variables["batch_stats"]), host(reference.batch_stats))


def _srresnet_parts(config):
    from edsr_jax import sharding

    model = train.create_model(config)
    return model, optim.create_optimizer(config, model), sharding.create_mesh(), jax.random.PRNGKey(0)
