"""Defaults shared by every configuration (the paper's recipe), documented field by field in
``edsr_jax/default_config.py``. Run as is, it trains the EDSR baseline x2 on DIV2K (TFDS):

    edsr-jax train --config configs/default.py --workdir runs/edsr_baseline_x2 \\
        --config.data.data_dir=/data/tfds
"""

from edsr_jax.default_config import apply_cpu_recipe, get_config  # noqa: F401
