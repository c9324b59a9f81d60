"""Inference (edsr_jax.inference): the one scale check, self-ensemble, tiled and bucketed
inference equal to the plain forward pass with bounded compiles, and properties of the dihedral
transforms and of tiling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.images import uint8_images
from support.trees import numpy_init

from edsr_jax import inference, models, tiling
from edsr_jax.errors import UserError

FEW = settings(max_examples=15, deadline=None)


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


def test_self_ensemble_equals_mean_of_eight_separate_passes(tiny):
    model, variables, x, reference = tiny
    forward = jax.jit(model.apply)
    batch = jnp.asarray(x)[None]
    separate = [
        np.asarray(inference.undo_dihedral(forward(variables, inference.dihedral(batch, k)), k))
        for k in range(8)
    ]
    expected = np.mean(separate, axis=0)[0]
    assert np.abs(separate[0] - separate[5]).max() > 0.1  # the transforms do change the output
    scale = np.abs(expected).max()
    up = inference.make_upscaler(model, variables, 2, self_ensemble=True)
    assert np.abs(up(x) - expected).max() <= 1e-4 * scale
    tiled_up = inference.make_upscaler(model, variables, 2, self_ensemble=True, tile=16)
    assert np.abs(tiled_up(x) - expected).max() <= 1e-4 * scale


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
    radius = models.receptive_radius(model)  # 6
    plain = jax.jit(lambda t: model.apply(variables, t))
    got = tiling.tiled(plain, x[None], scale=2, tile=2 * radius + 2, overlap=radius)
    np.testing.assert_allclose(got[0], reference, atol=1e-3)
    up = inference.make_upscaler(model, variables, 2, tile=16)
    np.testing.assert_allclose(up(x), reference, atol=1e-3)
    # Other sizes larger than a tile, even in one direction only, reuse the tile's two programs
    # (its trunk and its tail).
    for h, w in ((9, 17), (40, 17)):
        img = np.resize(x, (h, w, 3))
        ref = np.asarray(jax.jit(model.apply)(variables, jnp.asarray(img)[None]))[0]
        np.testing.assert_allclose(up(img), ref, atol=1e-3)
    assert up.traces == 2


@pytest.mark.parametrize("scale", [2, 3, 4, "mdsr"])
def test_tiled_float32_output_is_identical_to_the_whole_image_to_the_bit(scale, monkeypatch):
    # The contract stated in edsr_jax/tiling.py and the README (CPU): no tolerance.
    model = (
        models.MDSR(num_blocks=1, num_features=8)
        if scale == "mdsr"
        else models.EDSR(scale=scale, num_blocks=2, num_features=8)
    )
    ensemble = scale == "mdsr"  # (one self-ensemble case: its tiles are transposed and flipped)
    scale = 4 if scale == "mdsr" else scale
    variables = numpy_init(model)
    lr = np.random.default_rng(scale).integers(0, 256, (50, 58, 3), dtype=np.uint8)
    radius = models.receptive_radius(model)
    whole = inference.make_upscaler(model, variables, scale, self_ensemble=ensemble)
    expected = whole(lr)
    cases = ((2 * radius + 9, 1), (2 * radius + 15, inference.TAIL_STRIP_BYTES))
    for tile, strip_bytes in cases[ensemble:]:  # (the ensemble: 8 passes a tile, so fewer tiles)
        monkeypatch.setattr(inference, "TAIL_STRIP_BYTES", strip_bytes)  # 1: tails in 5-row strips
        tiled = inference.make_upscaler(model, variables, scale, self_ensemble=ensemble, tile=tile)
        assert tiled.tiles(lr)
        np.testing.assert_array_equal(tiled(lr), expected)
    np.testing.assert_array_equal(tiled.upscale_uint8(lr), whole.upscale_uint8(lr))


def test_a_tile_larger_than_the_image_is_the_image(tiny):
    model, variables, x, reference = tiny
    up = inference.make_upscaler(model, variables, 2, tile=100_000)  # (padded to it: 27.9 GiB)
    assert not up.tiles(x)
    np.testing.assert_allclose(up(x), reference, atol=1e-3)
    np.testing.assert_array_equal(
        up.upscale_uint8(x), inference.make_upscaler(model, variables, 2).upscale_uint8(x)
    )


def test_tiling_with_too_little_overlap_is_not_exact(tiny):
    model, variables, x, reference = tiny
    plain = jax.jit(lambda t: model.apply(variables, t))
    got = tiling.tiled(plain, x[None], scale=2, tile=10, overlap=2)
    assert np.abs(got[0] - reference).max() > 1e-3


def test_upscaler_rejects_bad_scales_tiles_and_images(tiny):
    model, variables, x, _ = tiny
    with pytest.raises(UserError, match="this model upscales by x2 only, not x3"):
        inference.make_upscaler(model, variables, 3)
    with pytest.raises(UserError, match="tile size 12"):
        inference.make_upscaler(model, variables, 2, tile=12)
    with pytest.raises(UserError, match=r"\(21, 30\)"):
        inference.make_upscaler(model, variables, 2)(x[..., 0])


def test_check_scale_is_the_one_scale_check():
    edsr, mdsr = models.EDSR(scale=3, num_blocks=1, num_features=4), models.MDSR(scales=(2, 4))
    assert inference.check_scale(edsr, None) == 3 and inference.check_scale(edsr, 3) == 3
    assert inference.check_scale(mdsr, 4) == 4
    with pytest.raises(UserError, match=r"checkpoint runs/x3 upscales by x3 only, not x2"):
        inference.check_scale(edsr, 2, "checkpoint runs/x3")
    with pytest.raises(UserError, match="this model upscales by x2, x4 only, not x3"):
        inference.check_scale(mdsr, 3)
    with pytest.raises(UserError, match="upscales by x2, x4: choose one of them as the scale"):
        inference.check_scale(mdsr, None)


def test_upscaler_without_a_scale_uses_the_models_only_one(tiny):
    model, variables, x, reference = tiny
    up = inference.make_upscaler(model, variables)
    assert up.scale == 2
    np.testing.assert_allclose(up(x), reference, atol=1e-3)


# --- properties -----------------------------------------------------------------------------------


@FEW
@given(x=uint8_images(min_side=1, max_side=7), k=st.integers(0, 7))
def test_undo_dihedral_inverts_dihedral_also_for_non_square(x, k):
    batch = x[None]
    back = np.asarray(inference.undo_dihedral(inference.dihedral(batch, k), k))
    np.testing.assert_array_equal(back, batch)
    transformed = np.asarray(inference.dihedral(batch, k))
    assert sorted(transformed.shape[1:3]) == sorted(batch.shape[1:3])


def test_the_eight_dihedral_transforms_are_distinct():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 3, 4, 2)
    seen = {
        np.asarray(inference.dihedral(x, k)).tobytes() + bytes(np.shape(inference.dihedral(x, k)))
        for k in range(8)
    }
    assert len(seen) == 8


@FEW
@given(
    x=uint8_images(min_side=1, max_side=30),
    scale=st.sampled_from([1, 2, 3]),
    tile=st.integers(6, 16),
    overlap=st.integers(0, 2),
)
def test_tiling_a_per_pixel_function_returns_the_whole_image_result(x, scale, tile, overlap):
    def nearest(t):  # per-pixel: no context, so every tile's interior is exact
        t = np.asarray(t)
        return np.repeat(np.repeat(t, scale, axis=1), scale, axis=2).astype(np.float32)

    batch = x[None].astype(np.float32)
    out = np.asarray(tiling.tiled(nearest, batch, scale=scale, tile=tile, overlap=overlap))
    np.testing.assert_array_equal(out, nearest(batch))
