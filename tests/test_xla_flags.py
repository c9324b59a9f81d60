"""The XLA CPU defaults edsr_jax applies at import (edsr_jax.xla_flags): what is added, what a user
setting keeps, the opt-out, jaxlib versions, and their effect on compiled convolutions."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from edsr_jax import xla_flags

FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def test_defaults_added_to_empty_environment():
    env = {}
    assert xla_flags.apply(env, jaxlib_version="0.10.2") == [FLAG]
    assert env["XLA_FLAGS"] == FLAG


def test_defaults_keep_other_user_flags():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    xla_flags.apply(env, jaxlib_version="0.10.2")
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=4", FLAG]


@pytest.mark.parametrize(
    "user", ["--xla_cpu_experimental_ynn_fusion_type=-reduce", "--xla_cpu_experimental_ynn_fusion_type"]
)
def test_defaults_never_override_a_user_setting(user):
    env = {"XLA_FLAGS": user}
    assert xla_flags.apply(env, jaxlib_version="0.10.2") == []
    assert env["XLA_FLAGS"] == user


def test_a_longer_flag_with_the_same_prefix_is_not_the_user_setting():
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type_other=1"}
    assert xla_flags.apply(env, jaxlib_version="0.10.2") == [FLAG]


@pytest.mark.parametrize("value, applied", [("1", False), ("true", False), ("0", True), ("", True)])
def test_opt_out(value, applied):
    env = {xla_flags.OPT_OUT_ENV: value}
    assert bool(xla_flags.apply(env, jaxlib_version="0.10.2")) == applied
    assert ("XLA_FLAGS" in env) == applied


@pytest.mark.parametrize(
    "version, applied", [("0.9.2", False), ("0.10.1", True), ("0.11.0.dev20260101", True)]
)
def test_flags_only_for_jaxlib_versions_that_parse_them(version, applied):
    env = {}
    assert bool(xla_flags.apply(env, jaxlib_version=version)) == applied


def test_import_applied_the_defaults_in_this_process():
    # conftest imports edsr_jax before any JAX computation.
    assert FLAG in os.environ["XLA_FLAGS"].split()
    assert xla_flags.backend_started()


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
    stock = _run_python(_conv_hlo_script(), **{xla_flags.OPT_OUT_ENV: "1"})
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
