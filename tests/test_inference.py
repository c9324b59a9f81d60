"""Self-ensemble, tiled and bucketed inference: equal to the plain forward pass, bounded compiles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edsr_jax import inference, models
from edsr_jax.errors import UserError


def numpy_init(model, seed=0):
    """PyTorch-like random variables made with numpy (compiling jax.random's init is slow on CPU)."""
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))
    rng = np.random.default_rng(seed)

    def fill(leaf):
        bound = 1 / np.sqrt(np.prod(leaf.shape[:-1])) if len(leaf.shape) == 4 else 0.1
        return jnp.asarray(rng.uniform(-bound, bound, leaf.shape), leaf.dtype)

    return jax.tree_util.tree_map(fill, shapes)


@pytest.fixture(scope="module")
def tiny():
    """A tiny random EDSR x2 (B1, F4) and a non-square LR image in [0, 255]."""
    model = models.EDSR(scale=2, num_blocks=1, num_features=4)
    variables = numpy_init(model)
    x = np.random.default_rng(0).uniform(0, 255, (21, 30, 3)).astype(np.float32)
    reference = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(x)[None]))[0]
    return model, variables, x, reference


def test_dihedral_transforms_are_eight_distinct_invertible_maps():
    x = np.arange(2 * 3 * 1).reshape(1, 2, 3, 1)
    seen = set()
    for k in range(8):
        t = inference.dihedral(x, k)
        assert t.shape == ((1, 3, 2, 1) if k & 4 else (1, 2, 3, 1))
        seen.add(t.tobytes() + bytes(t.shape))
        np.testing.assert_array_equal(inference.undo_dihedral(t, k), x)
    assert len(seen) == 8


def test_self_ensemble_of_identity_like_fns():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 7, 3)), jnp.float32)
    np.testing.assert_allclose(np.asarray(inference.self_ensemble(lambda z: z, x)), np.asarray(x), rtol=1e-6)
    # Nearest-neighbour x2 commutes with every transform: the ensemble equals one pass.
    nn2 = lambda z: jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda z: inference.self_ensemble(nn2, z))(x)),
                               np.asarray(nn2(x)), rtol=1e-6)


def test_self_ensemble_equals_mean_of_eight_separate_passes(tiny):
    model, variables, x, reference = tiny
    forward = jax.jit(model.apply)
    batch = jnp.asarray(x)[None]
    separate = [np.asarray(inference.undo_dihedral(forward(variables, inference.dihedral(batch, k)), k))
                for k in range(8)]
    expected = np.mean(separate, axis=0)[0]
    assert np.abs(separate[0] - separate[5]).max() > 0.1  # the transforms do change the output
    scale = np.abs(expected).max()
    ensemble = jax.jit(lambda z: inference.self_ensemble(lambda t: model.apply(variables, t), z))
    got = np.asarray(ensemble(batch))[0]
    assert np.abs(got - expected).max() <= 1e-4 * scale
    up = inference.make_upscaler(model, variables, 2, self_ensemble=True)
    assert np.abs(up(x) - expected).max() <= 1e-4 * scale
    tiled_up = inference.make_upscaler(model, variables, 2, self_ensemble=True, tile=16)
    assert np.abs(tiled_up(x) - expected).max() <= 1e-4 * scale


def test_receptive_radius_counts_every_conv():
    assert inference.receptive_radius(models.edsr_baseline(2)) == 36  # 1 + 32 + 1 + 1 + 1/2 -> 36
    assert inference.receptive_radius(models.edsr_baseline(4)) == 36  # + 1/2 (x2 stage) + 1/4
    assert inference.receptive_radius(models.edsr(3)) == 68
    assert inference.receptive_radius(models.mdsr_baseline()) == 44  # + 8 for the 5x5 blocks


def test_receptive_radius_is_what_the_network_sees(tiny):
    model, variables, _, _ = tiny
    radius = inference.receptive_radius(model)
    x = np.full((1, 31, 31, 3), 100.0, np.float32)
    forward = jax.jit(model.apply)
    base = np.asarray(forward(variables, x))
    x[0, 15, 15] += 50
    changed = np.abs(np.asarray(forward(variables, x)) - base).max(axis=(0, 3)) > 1e-5
    rows = np.nonzero(changed.any(axis=1))[0]
    reach = max(15 * 2 - rows.min(), rows.max() - (15 * 2 + 1)) / 2  # in LR pixels
    assert radius - 1 <= reach <= radius


def test_bucketed_whole_image_equals_plain_forward_and_compiles_once(tiny):
    model, variables, x, reference = tiny
    up = inference.make_upscaler(model, variables, 2)
    np.testing.assert_allclose(up(x), reference, atol=1e-3)
    for h, w in ((17, 25), (32, 20), (29, 31)):  # all pad to the 32x32 bucket
        y = up(x[:h, :w] if h <= 21 and w <= 30 else np.resize(x, (h, w, 3)))
        assert y.shape == (2 * h, 2 * w, 3)
    assert up.traces == 1


def test_tiled_equals_untiled_on_a_non_square_image(tiny):
    model, variables, x, reference = tiny
    radius = inference.receptive_radius(model)  # 6
    plain = jax.jit(lambda t: model.apply(variables, t))
    got = inference.tiled(plain, x[None], scale=2, tile=2 * radius + 2, overlap=radius)
    np.testing.assert_allclose(got[0], reference, atol=1e-3)
    up = inference.make_upscaler(model, variables, 2, tile=16)
    np.testing.assert_allclose(up(x), reference, atol=1e-3)
    # Smaller and larger images, including ones smaller than a tile, reuse the one tile program.
    for h, w in ((9, 11), (40, 17)):
        img = np.resize(x, (h, w, 3))
        ref = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(img)[None]))[0]
        np.testing.assert_allclose(up(img), ref, atol=1e-3)
    assert up.traces == 1


def test_tiling_with_too_little_overlap_is_not_exact(tiny):
    model, variables, x, reference = tiny
    plain = jax.jit(lambda t: model.apply(variables, t))
    got = inference.tiled(plain, x[None], scale=2, tile=10, overlap=2)
    assert np.abs(got[0] - reference).max() > 1e-3


def test_upscaler_rejects_bad_scales_tiles_and_images(tiny):
    model, variables, x, _ = tiny
    with pytest.raises(UserError, match="x2, not x3"):
        inference.make_upscaler(model, variables, 3)
    with pytest.raises(UserError, match="tile size 12"):
        inference.make_upscaler(model, variables, 2, tile=12)
    with pytest.raises(UserError, match=r"\(21, 30\)"):
        inference.make_upscaler(model, variables, 2)(x[..., 0])
