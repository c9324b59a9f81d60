"""The embedded demo's run: a 4-block, 48-feature EDSR x2 on the scikit-image photographs.

Re-exports ``edsr_jax/configs/demo.py``: configs ship in the package, so
``--config demo`` works from any installation; this file serves
``--config configs/demo.py``.
"""

from edsr_jax.configs.demo import get_config  # noqa: F401
