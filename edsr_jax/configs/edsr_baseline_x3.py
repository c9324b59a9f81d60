"""EDSR baseline (B16, F64) x3 on DIV2K with the paper's recipe (trained from scratch).

    edsr-jax train --config edsr_baseline_x3 --workdir runs/edsr_baseline_x3

As ``edsr_baseline_x2`` with LR patches 48x48 (HR 144x144) and TFDS ``div2k/bicubic_x3``. Expected
(published numbers; not yet reproduced with this code): about 30.9 dB on DIV2K 0801-0900 (RGB;
official model 30.92). Run time (an estimate, not measured): roughly 10-12 h on one A100/H100-class
GPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x3."""
    config = default_lib.get_config()
    config.scales = (3,)
    return config
