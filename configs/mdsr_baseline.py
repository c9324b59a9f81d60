"""MDSR baseline (B16, F64, scales 2/3/4) on DIV2K: one random scale per step, 650k steps.

Re-exports ``edsr_jax/configs/mdsr_baseline.py``: configs ship in the package, so
``--config mdsr_baseline`` works from any installation; this file serves
``--config configs/mdsr_baseline.py``.
"""

from edsr_jax.configs.mdsr_baseline import get_config  # noqa: F401
