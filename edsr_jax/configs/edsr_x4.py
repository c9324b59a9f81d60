"""The full EDSR x4, initialised from the x2 run (paper, Section 4.2).

    edsr-jax train --config edsr_x4 --workdir runs/edsr_x4 \
        --config.init_from=runs/edsr_x2

Target (published, not yet reproduced here): 29.25 dB on DIV2K 0801-0900, 32.46 dB on Set5.
Estimate (not measured; 40-60 % of an H100/H200's bf16 rate): 11.1 TFLOP/step, 2.0-2.9 h.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR x4 from EDSR x2."""
    config = default_lib.get_config()
    default_lib.use_full_edsr(config)
    config.scales = (4,)
    config.init_from = "runs/edsr_x2"  # the x2 workdir (or an exported/converted x2 model)
    return config
