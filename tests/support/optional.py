"""Optional test dependencies: PyTorch, which the `test` extra installs on Python 3.11 only.

PyTorch's CPU wheels come from a local file on these machines for Python 3.11; on newer Pythons the
registry serves only multi-GB CUDA builds, so the newest-stack CI lane (``.ci/run``) runs without it
and sets :data:`NO_TORCH_ENV`. There, tests that need PyTorch skip; in any other CI run they fail.
"""

import os

import pytest

# Set to 1 by the CI lane that runs without PyTorch (the declared subset of the README).
NO_TORCH_ENV = "EDSR_JAX_TESTS_WITHOUT_TORCH"


def import_torch():
    """``torch``, or a skip (a failure in CI unless :data:`NO_TORCH_ENV` is 1) when it is missing.

    Usable at module level (it skips the whole module).
    """
    try:
        import torch
    except ImportError:
        message = f"PyTorch is not installed (pip install -e '.[test]' on Python 3.11; {NO_TORCH_ENV}=1 lane)"
        if os.environ.get("CI", "").lower() == "true" and os.environ.get(NO_TORCH_ENV) != "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return torch
