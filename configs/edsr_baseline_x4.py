"""EDSR baseline (B16, F64) x4, initialised from the trained baseline x2 model (paper, Section 4.2).

Re-exports ``edsr_jax/configs/edsr_baseline_x4.py``: configs ship in the package, so
``--config edsr_baseline_x4`` works from any installation; this file serves
``--config configs/edsr_baseline_x4.py``.
"""

from edsr_jax.configs.edsr_baseline_x4 import get_config  # noqa: F401
