"""A tiny EDSR (B2, F16) trained for 60 steps on the scikit-image sample photographs, x2.

Re-exports ``edsr_jax/configs/test.py``: configs ship in the package, so
``--config test`` works from any installation; this file serves
``--config configs/test.py``.
"""

from edsr_jax.configs.test import get_config  # noqa: F401
