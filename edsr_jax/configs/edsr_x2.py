"""The full EDSR (B32, F256, residual scaling 0.1) x2 on DIV2K with the paper's recipe.

    edsr-jax train --config edsr_x2 --workdir runs/edsr_x2

Target (published, not yet reproduced here): 35.03 dB on DIV2K 0801-0900, 38.11 dB on Set5.
Estimate (not measured; 40-60 % of an H100/H200's bf16 rate): 9.0 TFLOP/step, 1.6-2.4 h.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR x2."""
    config = default_lib.get_config()
    default_lib.use_full_edsr(config)
    return config
