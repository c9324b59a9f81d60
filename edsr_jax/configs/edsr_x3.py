"""The full EDSR x3, initialised from the x2 run (paper, Section 4.2).

    edsr-jax train --config edsr_x3 --workdir runs/edsr_x3 \
        --config.init_from=runs/edsr_x2

Target (published, not yet reproduced here): 31.26 dB on DIV2K 0801-0900, 34.65 dB on Set5.
Estimate (not measured; 40-60 % of an H100/H200's bf16 rate): 9.7 TFLOP/step, 1.7-2.6 h.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR x3 from EDSR x2."""
    config = default_lib.get_config()
    default_lib.use_full_edsr(config)
    config.scales = (3,)
    config.init_from = "runs/edsr_x2"  # the x2 workdir (or an exported/converted x2 model)
    return config
