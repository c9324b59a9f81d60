"""The full EDSR x4, initialised from the trained x2 model (paper, Section 4.2).

Re-exports ``edsr_jax/configs/edsr_x4.py``: configs ship in the package, so
``--config edsr_x4`` works from any installation; this file serves
``--config configs/edsr_x4.py``.
"""

from edsr_jax.configs.edsr_x4 import get_config  # noqa: F401
