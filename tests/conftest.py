"""Test setup: 8 fake CPU devices (for sharding tests) and the fast XLA CPU defaults.

Both must be in XLA_FLAGS before the JAX backend starts, so they are set here, at import time.
"""

import os

import pytest

_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()

import edsr_jax  # noqa: E402,F401  (adds the CPU speed flags)

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


@pytest.fixture
def set5_dir() -> str:
    """The Set5 folder from ../shared/data/benchmarks."""
    return require_shared(os.path.join(BENCHMARKS, "Set5"))
