"""The full MDSR (B80, F64, scales 2/3/4) on DIV2K: one random scale per step, 650k steps.

Re-exports ``edsr_jax/configs/mdsr.py``: configs ship in the package, so
``--config mdsr`` works from any installation; this file serves
``--config configs/mdsr.py``.
"""

from edsr_jax.configs.mdsr import get_config  # noqa: F401
