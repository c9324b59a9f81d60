"""MDSR baseline (B16, F64, scales 2/3/4) on DIV2K: one random scale per step, 650k steps.

    edsr-jax train --config mdsr_baseline --workdir runs/mdsr_baseline

Target (published, not yet reproduced here): 34.63 / 30.94 / 28.97 dB (x2/x3/x4) on DIV2K 0801-0900.
Estimate (not measured; 40-60 % of an H100/H200's bf16 rate): 0.45 TFLOP/step, 11-27 min.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """MDSR baseline."""
    config = default_lib.get_config()
    config.model.arch = "mdsr"
    config.scales = (2, 3, 4)
    config.num_train_steps = 650_000
    return config
