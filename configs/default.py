"""Defaults shared by every configuration: the paper's recipe (Lim et al. 2017, Section 4).

Re-exports ``edsr_jax/configs/default.py``: configs ship in the package, so
``--config default`` works from any installation; this file serves
``--config configs/default.py``.
"""

from edsr_jax.configs.default import apply_cpu_recipe, get_config  # noqa: F401
