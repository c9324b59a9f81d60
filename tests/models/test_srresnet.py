"""SRResNet (edsr_jax.models.srresnet): parameter counts, shapes, batch norm in train and eval mode,
the spec, the receptive radius, and the same output as an independent PyTorch SRResNet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support.optional import import_torch

torch = import_torch()  # (skips the module where PyTorch is not installed)

from support.receptive import measured_reach  # noqa: E402
from support.torch_srresnet import TorchSRResNet, flax_variables, randomize_  # noqa: E402

from edsr_jax import models  # noqa: E402

# B16, F64, as documented in SRResNet's docstring.
DOCUMENTED_COUNTS = {2: 1_401_733, 3: 1_586_373, 4: 1_549_446}


def conv_params(k, cin, cout):
    return k * k * cin * cout + cout  # kernel + bias


def srresnet_params_by_layer(scale, blocks=16, f=64):
    """Ledig et al.'s generator written out layer by layer (one PReLU slope per layer)."""
    head = conv_params(9, 3, f) + 1  # 9x9 conv 3->F, PReLU
    block = 2 * conv_params(3, f, f) + 2 * (2 * f)  # two 3x3 convs, two BNs (scale, bias)
    body_end = conv_params(3, f, f) + 2 * f  # conv + BN before the long skip
    factors = (2, 2) if scale == 4 else (scale,)
    upsample = sum(conv_params(3, f, r * r * f) + 1 for r in factors)  # conv to r*r*F, PReLU
    tail = conv_params(9, f, 3)  # 9x9 conv F->3
    return head + blocks * block + body_end + upsample + tail


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_parameter_count_matches_layer_arithmetic_pytorch_and_docstring(scale):
    model = models.srresnet(scale)
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))
    expected = DOCUMENTED_COUNTS[scale]
    assert models.count_params(shapes["params"]) == srresnet_params_by_layer(scale) == expected
    assert sum(p.numel() for p in TorchSRResNet(scale, 16, 64).parameters()) == DOCUMENTED_COUNTS[scale]
    assert f"x{scale} {DOCUMENTED_COUNTS[scale]:,}" in " ".join(models.SRResNet.__doc__.split())
    # batch-norm running averages: a mean and a variance per BN channel, 2 BNs per block + body_end
    assert models.count_params(shapes["batch_stats"]) == (2 * 16 + 1) * 2 * 64


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_dtype_and_scale_argument(scale):
    model = models.SRResNet(scale=scale, num_blocks=1, num_features=8)
    variables = models.init(model, jax.random.key(0))
    x = jnp.full((2, 5, 7, 3), 128.0)
    y = model.apply(variables, x, scale=scale)
    assert y.shape == (2, 5 * scale, 7 * scale, 3) and y.dtype == jnp.float32
    assert model.scales == (scale,)
    with pytest.raises(ValueError, match=f"upscales x{scale}, got scale=5"):
        model.apply(variables, x, scale=5)


def test_init_draws_convs_like_pytorch_and_starts_bn_and_prelu_at_pytorch_defaults():
    model = models.SRResNet(scale=2, num_blocks=2, num_features=8)
    variables = models.init(model, jax.random.key(3))
    reference = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3))))
    assert jax.tree.map(lambda a: (a.shape, a.dtype), variables) == jax.tree.map(
        lambda a: (a.shape, a.dtype), reference
    )
    p, s = variables["params"], variables["batch_stats"]
    bound = 1 / np.sqrt(9 * 9 * 3)  # head fan_in
    assert 0.8 * bound < float(jnp.abs(p["head"]["kernel"]).max()) <= bound
    assert float(p["head_act"]["negative_slope"]) == 0.25 == float(p["upsample"]["act_0"]["negative_slope"])
    for bn in (p["block_1"]["bn2"], p["body_end_bn"]):
        np.testing.assert_array_equal(bn["scale"], np.ones(8))
        np.testing.assert_array_equal(bn["bias"], np.zeros(8))
    np.testing.assert_array_equal(s["block_0"]["bn1"]["mean"], np.zeros(8))
    np.testing.assert_array_equal(s["block_0"]["bn1"]["var"], np.ones(8))
    assert set(models.init(models.EDSR(num_blocks=1, num_features=8), jax.random.key(0))) == {"params"}


def _tiny_with_random_stats(seed=0):
    """A B1 F4 SRResNet whose BN parameters and running averages are not the defaults."""
    model = models.SRResNet(scale=2, num_blocks=1, num_features=4)
    variables = models.init(model, jax.random.key(seed))
    rng = np.random.default_rng(seed)
    stats = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape)), variables["batch_stats"])
    return model, {"params": variables["params"], "batch_stats": stats}


def test_train_mode_normalises_with_batch_statistics_and_updates_running_averages_like_pytorch():
    model, variables = _tiny_with_random_stats()
    x = np.random.default_rng(1).uniform(0, 255, (3, 6, 5, 3)).astype(np.float32)
    y_train, inter = model.apply(
        variables, x, train=True, mutable=["batch_stats", "intermediates"], capture_intermediates=True
    )
    y_eval, inter_eval = model.apply(variables, x, mutable=["intermediates"], capture_intermediates=True)
    assert not np.allclose(y_train, y_eval, atol=1.0)
    bn_in = np.asarray(inter["intermediates"]["block_0"]["conv1"]["__call__"][0], np.float64)
    bn_out = np.asarray(inter["intermediates"]["block_0"]["bn1"]["__call__"][0])
    scale = np.asarray(variables["params"]["block_0"]["bn1"]["scale"])
    bias = np.asarray(variables["params"]["block_0"]["bn1"]["bias"])
    mean, var = bn_in.mean(axis=(0, 1, 2)), bn_in.var(axis=(0, 1, 2))  # biased, as BN normalises
    expected = (bn_in - mean) / np.sqrt(var + 1e-5) * scale + bias
    np.testing.assert_allclose(bn_out, expected, rtol=1e-4, atol=1e-4)
    old = variables["batch_stats"]["block_0"]["bn1"]
    new = inter["batch_stats"]["block_0"]["bn1"]
    # PyTorch's momentum 0.1: running = 0.9 * running + 0.1 * batch (the variance kept biased)
    np.testing.assert_allclose(new["mean"], 0.9 * np.asarray(old["mean"]) + 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(new["var"], 0.9 * np.asarray(old["var"]) + 0.1 * var, rtol=1e-5)
    # eval mode normalises with the running averages and leaves them alone
    bn_in_eval = np.asarray(inter_eval["intermediates"]["block_0"]["conv1"]["__call__"][0])
    bn_out_eval = np.asarray(inter_eval["intermediates"]["block_0"]["bn1"]["__call__"][0])
    expected = (bn_in_eval - old["mean"]) / np.sqrt(np.asarray(old["var"]) + 1e-5) * scale + bias
    np.testing.assert_allclose(bn_out_eval, expected, rtol=1e-4, atol=1e-4)
    assert "batch_stats" not in inter_eval


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_same_output_as_pytorch_srresnet_in_eval_and_train_mode(scale):
    torch.manual_seed(scale)
    net = randomize_(TorchSRResNet(scale, num_blocks=2, num_features=8), seed=scale)
    variables = jax.tree.map(jnp.asarray, flax_variables(net))
    model = models.SRResNet(scale=scale, num_blocks=2, num_features=8)
    x = np.random.default_rng(scale).uniform(0, 255, (2, 7, 6, 3)).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected_eval = net.eval()(xt).permute(0, 2, 3, 1).numpy()
        expected_train = net.train()(xt).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(model.apply(variables, x), expected_eval, atol=2e-3)
    y, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y, expected_train, atol=2e-3)
    # running averages after one step: PyTorch keeps the unbiased variance, Flax the biased one
    bn, n = net.blocks[1].bn2, 2 * 7 * 6
    ours = updates["batch_stats"]["block_1"]["bn2"]
    np.testing.assert_allclose(ours["mean"], bn.running_mean.numpy(), rtol=1e-4, atol=1e-5)
    old_var = variables["batch_stats"]["block_1"]["bn2"]["var"]
    torch_batch_var = (bn.running_var.numpy() - 0.9 * old_var) / 0.1
    np.testing.assert_allclose(ours["var"], 0.9 * old_var + 0.1 * torch_batch_var * (n - 1) / n, rtol=1e-4)


def test_spec_round_trip_and_presets():
    model = models.srresnet(4)
    spec = models.model_spec(model)
    assert spec == {"arch": "srresnet", "scale": 4, "num_blocks": 16, "num_features": 64}
    assert models.from_spec(spec) == model
    assert models.from_spec(spec, dtype=jnp.bfloat16).dtype == jnp.bfloat16
    assert isinstance(model, models.SRModel)
    assert models.param_shapes(model)["upsample/conv_1/kernel"] == (3, 3, 64, 256)
    assert models.param_shapes(model)["head_act/negative_slope"] == ()


def test_receptive_radius_is_what_the_network_sees():
    assert [models.receptive_radius(models.srresnet(s)) for s in (2, 3, 4)] == [40, 40, 40]  # 4+32+2+4/s
    model, variables = _tiny_with_random_stats()
    radius = models.receptive_radius(model)  # 4 + 2 + 1 + 1 + 2 = 10
    assert radius == 10
    reach = measured_reach(model, variables)  # in LR pixels
    assert radius - 1 <= reach <= radius
