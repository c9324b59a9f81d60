"""EDSR baseline (B16, F64) x4 on DIV2K with the paper's recipe (trained from scratch).

    edsr-jax train --config edsr_baseline_x4 --workdir runs/edsr_baseline_x4

As ``edsr_baseline_x2`` with LR patches 48x48 (HR 192x192) and TFDS ``div2k/bicubic_x4``. Expected
(published numbers; not yet reproduced with this code): about 28.95 dB on DIV2K 0801-0900 (RGB;
official model 28.95). Run time (an estimate, not measured): roughly 12-14 h on one A100/H100-class
GPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x4."""
    config = default_lib.get_config()
    config.scales = (4,)
    return config
