"""EDSR baseline (B16, F64) x4, initialised from the baseline x2 run (paper, Section 4.2).

    edsr-jax train --config edsr_baseline_x4 --workdir runs/edsr_baseline_x4 \
        --config.init_from=runs/edsr_baseline_x2

Target (published, not yet reproduced here): 28.95 dB on DIV2K 0801-0900 (RGB).
Estimate (not measured; 40-60 % of an H100/H200's bf16 rate): 0.44 TFLOP/step, 5-12 min.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x4 from EDSR baseline x2."""
    config = default_lib.get_config()
    config.scales = (4,)
    config.init_from = "runs/edsr_baseline_x2"  # the x2 workdir (or an exported/converted x2 model)
    return config
