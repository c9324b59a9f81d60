"""The full MDSR (B80, F64, scales 2/3/4) on DIV2K: one random scale per step, 650k steps.

    edsr-jax train --config mdsr --workdir runs/mdsr

Target (published, not yet reproduced here): 34.92 / 31.22 / 29.24 dB (x2/x3/x4) on DIV2K 0801-0900.
Estimate (not measured; 40-60 % of an H100/H200's bf16 rate): 1.5 TFLOP/step, 34-52 min.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """MDSR."""
    config = default_lib.get_config()
    config.model.arch = "mdsr"  # one shared trunk, per-scale pre-processing and upsamplers
    config.scales = (2, 3, 4)  # one random scale per step
    config.num_train_steps = 650_000
    config.model.num_blocks = 80
    return config
