"""CPU convolution routing per compiled program (edsr_jax.compiler_options): which options each
kind of program gets, that they reach the library's compiled programs without XLA_FLAGS, and that
a user's XLA_FLAGS wins."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support.paths import ROOT

from edsr_jax import compiler_options, inference, models, optim, sharding, train_step
from edsr_jax.configs import default

FLAG = compiler_options.YNN_FUSION_TYPE
XLA_KERNELS = {FLAG: ""}


def test_training_uses_xla_kernels_and_inference_ynnpack_only_with_avx512():
    assert compiler_options.xla_kernels_for("train", avx512=True)
    assert compiler_options.xla_kernels_for("train", avx512=False)
    assert not compiler_options.xla_kernels_for("infer", avx512=True)
    assert compiler_options.xla_kernels_for("infer", avx512=False)
    with pytest.raises(ValueError, match="kind must be one of"):
        compiler_options.xla_kernels_for("eval", avx512=True)


def test_options_are_for_cpu_programs_only_and_a_users_xla_flags_win():
    assert compiler_options.for_program("train", "cpu", {}) == XLA_KERNELS
    assert compiler_options.for_program("train", "gpu", {}) == {}
    assert compiler_options.for_program("infer", "tpu", {}) == {}
    for flags in (f"--{FLAG}=dot", f"--xla_cpu_use_onednn=true --{FLAG}=", f"--no{FLAG}"):
        assert compiler_options.for_program("train", "cpu", {"XLA_FLAGS": flags}) == {}, flags
    assert compiler_options.for_program("train", "cpu", {"XLA_FLAGS": "--xla_other=1"}) == XLA_KERNELS


def test_avx512_is_read_from_the_cpu_flags(tmp_path):
    with_it, without = tmp_path / "a", tmp_path / "b"
    with_it.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert compiler_options.cpu_has_avx512(str(with_it))
    assert not compiler_options.cpu_has_avx512(str(without))
    assert not compiler_options.cpu_has_avx512(str(tmp_path / "missing"))


def _uses_ynnpack(compiled) -> bool:
    return "__ynn_fusion" in compiled.as_text()  # the fusion kind, not a name in metadata


def _stock_routes_convolutions_to_ynnpack() -> bool:
    conv = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return _uses_ynnpack(jax.jit(conv).lower(jnp.ones((1, 8, 8, 64)), jnp.ones((3, 3, 64, 64))).compile())


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU routing")
def test_the_library_programs_compile_with_their_routing_without_xla_flags():
    assert FLAG not in os.environ.get("XLA_FLAGS", "")
    if not _stock_routes_convolutions_to_ynnpack():
        pytest.skip("this jaxlib does not hand convolutions to YNNPACK by default")
    model = models.EDSR(scale=2, num_blocks=1, num_features=32)  # (YNNPACK takes >= 32 channels)
    mesh = sharding.create_mesh(jax.devices()[:1])
    tx = optim.create_optimizer(default.get_config(), model)
    state, shardings = train_step.create_train_state(model, tx, mesh, jax.random.PRNGKey(0))
    step = train_step.compile_train_step(model, tx, optax.constant_schedule(1e-3), mesh, shardings, 2)
    batch = sharding.make_global_batch(
        {"low_res": np.zeros((2, 8, 8, 3), np.uint8), "high_res": np.zeros((2, 16, 16, 3), np.uint8)}, mesh
    )
    assert not _uses_ynnpack(step.lower(state, batch).compile())  # training: XLA's kernels
    up = inference.make_upscaler(model, {"params": state.params})
    compiled = up._forward.lower(
        up._variables[0], np.zeros((1, 16, 16, 3), np.float32), np.zeros(4, np.int32)
    )
    expected = not compiler_options.xla_kernels_for("infer", compiler_options.cpu_has_avx512())
    assert _uses_ynnpack(compiled.compile()) == expected
    forced = inference.make_upscaler(model, {"params": state.params}, compiler_options=XLA_KERNELS)
    compiled = forced._forward.lower(
        up._variables[0], np.zeros((1, 16, 16, 3), np.float32), np.zeros(4, np.int32)
    )
    assert not _uses_ynnpack(compiled.compile())  # an explicit argument wins


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU routing")
def test_a_users_xla_flags_decide_the_routing_of_inference():
    code = (
        "import jax, numpy as np\n"
        "from edsr_jax import inference, models\n"
        "m = models.EDSR(scale=2, num_blocks=1, num_features=32)\n"
        "up = inference.make_upscaler(m, models.init(m, jax.random.PRNGKey(0)))\n"
        "x, valid = np.zeros((1, 16, 16, 3), np.float32), np.zeros(4, np.int32)\n"
        "c = up._forward.lower(up._variables[0], x, valid)\n"
        "print('YNN' if '__ynn_fusion' in c.compile().as_text() else 'XLA')\n"
    )
    env = {**os.environ, "XLA_FLAGS": f"--{FLAG}="}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "XLA"
