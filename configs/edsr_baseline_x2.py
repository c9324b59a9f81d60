"""EDSR baseline (B16, F64) x2 on DIV2K with the paper's recipe.

Re-exports ``edsr_jax/configs/edsr_baseline_x2.py``: configs ship in the package, so
``--config edsr_baseline_x2`` works from any installation; this file serves
``--config configs/edsr_baseline_x2.py``.
"""

from edsr_jax.configs.edsr_baseline_x2 import get_config  # noqa: F401
