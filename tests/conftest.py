"""Test setup: 8 fake CPU devices (for sharding tests) and shared fixtures.

The device count must be in XLA_FLAGS before the JAX backend starts, so it is set here, at import
time. The test process is a program that reads checkpoints while trainers write them, so it drops
the reports of late Orbax results as the ``edsr-jax`` command does (``checkpoint/late_results.py``).
Plain helper functions live in ``tests/support/`` (``from support import trees``).
"""

import os

import pytest

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

from edsr_jax.checkpoint import late_results  # noqa: E402

late_results.ignore_results_for_closed_loops()

# ../shared/data beside the checkout holds Set5 (HR and real MATLAB LR images).
SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
BENCHMARKS = os.path.join(SHARED_DATA, "benchmarks")


def require_shared(path: str) -> str:
    """Returns ``path``; in CI (CI=true) a missing path fails the test, elsewhere it skips."""
    if os.path.exists(path):
        return path
    message = f"shared test data not found at {path} (expected ../shared/data beside the checkout)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def benchmarks_dir() -> str:
    """../shared/data/benchmarks (it holds Set5); session-wide, so module fixtures can use it."""
    require_shared(os.path.join(BENCHMARKS, "Set5"))
    return BENCHMARKS


@pytest.fixture
def set5_dir() -> str:
    """The Set5 folder from ../shared/data/benchmarks."""
    return require_shared(os.path.join(BENCHMARKS, "Set5"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One decoded-image cache for every training run of a module."""
    return str(tmp_path_factory.mktemp("image_cache"))


@pytest.fixture(scope="session", autouse=True)
def default_compilation_cache(tmp_path_factory):
    """Points edsr-jax's default compilation cache (``"auto"``) at a session folder, never the
    user's ``~/.cache``; subprocesses inherit it through ``EDSR_JAX_COMPILATION_CACHE``."""
    from edsr_jax import compile_cache

    before = os.environ.get(compile_cache.ENV)
    os.environ[compile_cache.ENV] = str(tmp_path_factory.mktemp("xla_cache_default"))
    yield os.environ[compile_cache.ENV]
    if before is None:
        del os.environ[compile_cache.ENV]
    else:
        os.environ[compile_cache.ENV] = before


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """A persistent XLA cache for a module (``pytestmark = pytest.mark.usefixtures(...)``): the
    training runs of a module share most compiled programs."""
    import jax

    path = str(tmp_path_factory.mktemp("xla_cache"))
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", path)
    yield path
    jax.config.update("jax_compilation_cache_dir", before)
