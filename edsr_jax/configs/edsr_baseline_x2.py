"""EDSR baseline (B16, F64) x2 on DIV2K with the paper's recipe.

    edsr-jax train --config edsr_baseline_x2 --workdir runs/edsr_baseline_x2

Target (published, not yet reproduced here): 34.61 dB on DIV2K 0801-0900 (RGB).
Estimate (not measured; 40-60 % of an H100/H200's bf16 rate): 0.30 TFLOP/step, 5-12 min.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x2."""
    return default_lib.get_config()
