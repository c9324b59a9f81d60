"""edsr_jax.models.conv: the forward pass is nn.Conv's, its CPU backward pass gives the same
gradients as JAX's own differentiation of the plain convolution, and the optimised CPU programs
use the fast gradient forms while GPU/TPU programs keep the standard ones.

The reference is written here (``lax.conv_general_dilated`` with SAME padding), not taken from
the package.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edsr_jax import models
from edsr_jax.models import conv

# (batch, height, width, in_channels, out_channels, kernel): the head (3 -> F), body convs (batch
# 2: kernel gradient in strips; batch 8: standard), the RGB tail (F -> 3, the shifted-g kernel
# gradient), MDSR's 5x5 pre-processing (strips with a 4-row halo), odd sizes.
SHAPES = [
    (2, 9, 7, 3, 16, 3),
    (2, 8, 8, 16, 16, 3),
    (8, 5, 4, 16, 16, 3),
    (3, 10, 6, 16, 3, 3),
    (1, 7, 9, 8, 8, 5),
    (1, 7, 9, 8, 12, 5),
    (2, 5, 11, 12, 1, 3),
]


def _reference(x, kernel, bias):
    """The convolution as nn.Conv computes it (stride 1, SAME), differentiated by JAX itself."""
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def _arrays(shape, dtype=jnp.float32, seed=0):
    n, h, w, cin, cout, k = shape
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, h, w, cin)), dtype)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), dtype)
    bias = jnp.asarray(rng.normal(size=(cout,)), dtype)
    cot = jnp.asarray(rng.normal(size=(n, h, w, cout)), dtype)
    return x, kernel, bias, cot


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_forward_and_gradients_match_plain_convolution(shape):
    x, kernel, bias, cot = _arrays(shape)
    y_ref, vjp_ref = jax.vjp(_reference, x, kernel, bias)
    y, vjp = jax.jit(lambda a, b, c: jax.vjp(conv.conv2d, a, b, c))(x, kernel, bias)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want, name in zip(vjp(cot), vjp_ref(cot), ("input", "kernel", "bias"), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{name} gradient")


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[2]], ids=["head", "tail"])
def test_cpu_and_default_parameter_gradients_agree(shape):
    # Both branches of the platform_dependent switch, called directly: the default one (GPU/TPU)
    # is the plain transpose, the CPU one the rewritten forms.
    x, kernel, _, cot = _arrays(shape, seed=1)
    dk_cpu, db_cpu = jax.jit(conv._param_grads_cpu)(x, kernel, cot)
    dk_def, db_def = jax.jit(conv._param_grads_default)(x, kernel, cot)
    np.testing.assert_allclose(dk_cpu, dk_def, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(db_cpu, db_def, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batch,height", [(1, 9), (2, 8), (3, 7), (4, 13), (8, 6)])
def test_kernel_gradient_in_strips_equals_the_standard_one(batch, height):
    # Strips make (images x strips) a multiple of 8; heights that do not divide are zero-padded.
    strips = conv.kernel_grad_strips(batch)
    assert (batch * strips) % 8 == 0 and (strips == 1) == (batch % 8 == 0)
    x, kernel, bias, cot = _arrays((batch, height, 5, 6, 16, 3), seed=4)
    want = jax.vjp(_reference, x, kernel, bias)[1](cot)[1]  # JAX's own kernel gradient
    for s in (2, 3, strips):
        got = jax.jit(conv._kernel_grad_in_strips, static_argnums=3)(x, kernel, cot, s)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=f"{s} strips")


def test_bfloat16_gradients_keep_dtype_and_are_close():
    x, kernel, bias, cot = _arrays(SHAPES[2], jnp.bfloat16, seed=2)
    grads = jax.vjp(conv.conv2d, x, kernel, bias)[1](cot)
    ref = jax.vjp(_reference, *(a.astype(jnp.float32) for a in (x, kernel, bias)))[1](cot.astype(jnp.float32))
    for got, want in zip(grads, ref, strict=True):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=0.05, atol=0.1)


def test_conv_module_has_nn_conv_parameters_and_output():
    x = jnp.asarray(np.random.default_rng(3).uniform(0, 1, (1, 6, 5, 4)), jnp.float32)
    ours = models.Conv(7, 3, 4)
    theirs = nn.Conv(7, (3, 3), padding="SAME")
    variables = ours.init(jax.random.PRNGKey(0), x)
    shapes = jax.tree.map(jnp.shape, variables)
    assert shapes == jax.tree.map(jnp.shape, theirs.init(jax.random.PRNGKey(0), x))
    np.testing.assert_allclose(ours.apply(variables, x), theirs.apply(variables, x), rtol=1e-6, atol=1e-6)
    assert models.Conv is conv.Conv and models.conv2d is conv.conv2d  # re-exported


def test_conv_module_rejects_wrong_channels_and_even_kernels():
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="expects 5 input channels, got shape"):
        models.Conv(8, 3, 5).init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="odd kernel_size, got 4"):
        models.Conv(8, 4, 3).init(jax.random.PRNGKey(0), x)


# --- the compiled programs: CPU forms on CPU only ------------------------------------------------


def _grad_hlo(conv_fn, cout: int) -> str:
    """Optimised CPU HLO of the parameter gradients of sum(conv(x, w, b)) on a 2x40x40x16 input,
    compiled as the library compiles its training programs."""
    from edsr_jax import compiler_options

    x = jnp.ones((2, 40, 40, 16))
    w, b = jnp.ones((3, 3, 16, cout)), jnp.ones((cout,))
    options = compiler_options.for_program(compiler_options.TRAIN, "cpu")
    grads = jax.jit(
        jax.grad(lambda w, b: jnp.sum(conv_fn(x, w, b) ** 2), argnums=(0, 1)), compiler_options=options
    )
    return grads.lower(w, b).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU backend forms")
def test_conv_parameter_gradients_use_the_fast_cpu_forms():
    assert conv.SMALL_OUT_CHANNELS >= 3  # the RGB tail takes the GEMM form
    plain = _grad_hlo(_reference, 3)
    # The premise: plain autodiff gives a reduce-window bias gradient and a backward-filter conv.
    assert "reduce-window(" in plain and plain.count("convolution(") == 2
    ours = _grad_hlo(conv.conv2d, 3)
    assert "reduce-window(" not in ours  # the bias gradient is a GEMV
    assert ours.count("convolution(") == 1  # forward only: the tail's kernel gradient is a GEMM
    wide = _grad_hlo(conv.conv2d, 32)
    assert "reduce-window(" not in wide and wide.count("convolution(") == 2  # standard kernel grad


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_gpu_and_tpu_programs_keep_the_standard_conv_gradients(platform):
    # Lowered (not run) for the accelerator: the CPU forms must not leak into GPU/TPU programs.
    x = jnp.ones((2, 16, 16, 8))
    grads = jax.jit(jax.grad(lambda w, b: jnp.sum(conv.conv2d(x, w, b) ** 2), argnums=(0, 1)))
    w, b = jnp.ones((3, 3, 8, 3)), jnp.ones((3,))
    accel = jax.export.export(grads, platforms=[platform])(w, b).mlir_module()
    cpu = jax.export.export(grads, platforms=["cpu"])(w, b).mlir_module()
    count = lambda text, op: text.count(f"stablehlo.{op}")  # noqa: E731
    assert (count(accel, "convolution"), count(accel, "dot_general")) == (2, 0)  # fwd + kernel grad
    assert count(accel, "reduce") >= 1  # the bias gradient as a sum
    assert (count(cpu, "convolution"), count(cpu, "dot_general")) == (1, 2)  # GEMV + tail GEMM
