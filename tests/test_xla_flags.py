"""The fast paths users rely on: XLA CPU defaults, device-resident donated train steps (no timing)."""

import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from edsr_jax import _xla_defaults, models, ops, sharding, train

FLAG = "--xla_cpu_experimental_ynn_fusion_type="


# --- XLA defaults -------------------------------------------------------------------------------


def test_defaults_added_to_empty_environment():
    env = {}
    assert _xla_defaults.apply(env, jaxlib_version="0.10.2") == [FLAG]
    assert env["XLA_FLAGS"] == FLAG


def test_defaults_keep_other_user_flags():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    _xla_defaults.apply(env, jaxlib_version="0.10.2")
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=4", FLAG]


@pytest.mark.parametrize(
    "user", ["--xla_cpu_experimental_ynn_fusion_type=-reduce", "--xla_cpu_experimental_ynn_fusion_type"]
)
def test_defaults_never_override_a_user_setting(user):
    env = {"XLA_FLAGS": user}
    assert _xla_defaults.apply(env, jaxlib_version="0.10.2") == []
    assert env["XLA_FLAGS"] == user


def test_a_longer_flag_with_the_same_prefix_is_not_the_user_setting():
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type_other=1"}
    assert _xla_defaults.apply(env, jaxlib_version="0.10.2") == [FLAG]


@pytest.mark.parametrize("value, applied", [("1", False), ("true", False), ("0", True), ("", True)])
def test_opt_out(value, applied):
    env = {_xla_defaults.OPT_OUT_ENV: value}
    assert bool(_xla_defaults.apply(env, jaxlib_version="0.10.2")) == applied
    assert ("XLA_FLAGS" in env) == applied


@pytest.mark.parametrize(
    "version, applied", [("0.9.2", False), ("0.10.1", True), ("0.11.0.dev20260101", True)]
)
def test_flags_only_for_jaxlib_versions_that_parse_them(version, applied):
    env = {}
    assert bool(_xla_defaults.apply(env, jaxlib_version=version)) == applied


def test_import_applied_the_defaults_in_this_process():
    # conftest imports edsr_jax before any JAX computation.
    assert FLAG in os.environ["XLA_FLAGS"].split()
    assert _xla_defaults.backend_started()


def _conv_hlo_script() -> str:
    """A program printing whether XLA compiled a 64-channel conv into a YNNPACK fusion."""
    return (
        "import edsr_jax, jax, jax.numpy as jnp\n"
        "f = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',"
        " dimension_numbers=('NHWC', 'HWIO', 'NHWC'))\n"
        "c = jax.jit(f).lower(jnp.ones((1, 8, 8, 64)), jnp.ones((3, 3, 64, 64))).compile()\n"
        "print('YNN' if '__ynn_fusion' in c.as_text() else 'NO_YNN')\n"
    )


def _run_python(code: str, **env_changes) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(env_changes)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def _uses_ynn() -> bool:
    f = lambda x, w: jax.lax.conv_general_dilated(  # noqa: E731
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    compiled = jax.jit(f).lower(jnp.ones((1, 8, 8, 64)), jnp.ones((3, 3, 64, 64))).compile()
    return "__ynn_fusion" in compiled.as_text()  # the fusion kind (not a name in metadata)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU backend flag")
def test_defaults_take_convolutions_off_ynnpack_and_opt_out_restores_stock():
    assert not _uses_ynn()  # this process: edsr_jax imported first (conftest)
    stock = _run_python(_conv_hlo_script(), **{_xla_defaults.OPT_OUT_ENV: "1"})
    if stock == "NO_YNN":
        pytest.skip("this jaxlib does not route convolutions to YNNPACK by default")
    assert stock == "YNN"


def test_late_import_warns_that_flags_do_not_apply():
    code = (
        "import warnings, jax, jax.numpy as jnp\n"
        "jnp.ones(1).block_until_ready()\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    import edsr_jax\n"
        "print('WARNED' if any('do not apply' in str(x.message) for x in w) else 'SILENT')\n"
    )
    assert _run_python(code) == "WARNED"


# --- conv gradients: the CPU forms of edsr_jax.ops ---------------------------------------------


def _grad_hlo(conv, cout: int) -> str:
    """Optimised CPU HLO of the parameter gradients of sum(conv(x, w, b)) on a 2x40x40x16 input."""
    x = jnp.ones((2, 40, 40, 16))
    w, b = jnp.ones((3, 3, 16, cout)), jnp.ones((cout,))
    grads = jax.jit(jax.grad(lambda w, b: jnp.sum(conv(x, w, b) ** 2), argnums=(0, 1)))
    return grads.lower(w, b).compile().as_text()


def _plain_conv(x, w, b):
    return ops._conv(x, w) + b  # what nn.Conv computes, differentiated by JAX itself


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU backend forms")
def test_conv_parameter_gradients_use_the_fast_cpu_forms():
    plain = _grad_hlo(_plain_conv, 3)
    # The premise: plain autodiff gives a reduce-window bias gradient and a backward-filter conv.
    assert "reduce-window(" in plain and plain.count("convolution(") == 2
    ours = _grad_hlo(ops.conv2d, 3)
    assert "reduce-window(" not in ours  # the bias gradient is a GEMV
    assert ours.count("convolution(") == 1  # forward only: the tail's kernel gradient is a GEMM
    wide = _grad_hlo(ops.conv2d, 32)
    assert "reduce-window(" not in wide and wide.count("convolution(") == 2  # standard kernel grad


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_gpu_and_tpu_programs_keep_the_standard_conv_gradients(platform):
    # Lowered (not run) for the accelerator: the CPU forms must not leak into GPU/TPU programs.
    x = jnp.ones((2, 16, 16, 8))
    grads = jax.jit(jax.grad(lambda w, b: jnp.sum(ops.conv2d(x, w, b) ** 2), argnums=(0, 1)))
    w, b = jnp.ones((3, 3, 8, 3)), jnp.ones((3,))
    accel = jax.export.export(grads, platforms=[platform])(w, b).mlir_module()
    cpu = jax.export.export(grads, platforms=["cpu"])(w, b).mlir_module()
    count = lambda text, op: text.count(f"stablehlo.{op}")  # noqa: E731
    assert (count(accel, "convolution"), count(accel, "dot_general")) == (2, 0)  # fwd + kernel grad
    assert count(accel, "reduce") >= 1  # the bias gradient as a sum
    assert (count(cpu, "convolution"), count(cpu, "dot_general")) == (1, 2)  # GEMV + tail GEMM


# --- benchmark scripts stay runnable --------------------------------------------------------------


EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")


def test_fma_peak_measures_a_positive_rate():
    import shutil

    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler to build the FMA kernel")
    sys.path.insert(0, EXPERIMENTS)
    import fma_peak

    assert fma_peak.measure(threads=1, seconds=0.05) > 1.0  # GFLOP/s; any real CPU does far more


def test_bench_models_quick_run_writes_results(tmp_path):
    sys.path.insert(0, EXPERIMENTS)
    import bench_models

    out = tmp_path / "bench.json"
    argv = ["--quick", "--workloads", "infer,train4", "--repeats", "1", "--peak-gflops", "50"]
    assert bench_models.main(argv + ["--json", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [r["workload"] for r in rows] == ["infer", "train4"]
    assert all(len(r["times"]["jax"]) == 1 and r["flops"] > 0 for r in rows)
    assert rows[1]["compile_s"] > 0


# --- the train step: device-resident, no host transfers, donated state -------------------------


@pytest.fixture(scope="module")
def tiny_step():
    model = models.EDSR(scale=2, num_blocks=1, num_features=8)
    cfg = types.SimpleNamespace(adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8)
    tx = train.create_optimizer(cfg, model)
    mesh = sharding.create_mesh(jax.devices()[:2])  # data-parallel, and quick to compile
    # Random numpy parameters of the right shapes: compiling the initialiser costs seconds on CPU.
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.PRNGKey(0))["params"])
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda a: rng.uniform(-0.1, 0.1, a.shape).astype(np.float32), shapes)
    state = train.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=jax.random.PRNGKey(1)
    )
    shardings = jax.tree.map(lambda _: sharding.replicated(mesh), state)
    state = jax.device_put(state, shardings)
    step = train.compile_train_step(model, tx, optax.constant_schedule(1e-3), mesh, shardings, 2)
    n = mesh.devices.size
    batch = sharding.make_global_batch(
        {
            "lr": rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
            "hr": rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8),
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
