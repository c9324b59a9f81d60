"""EDSR baseline (B16, F64) x3, initialised from the trained baseline x2 model (paper, Section 4.2).

    edsr-jax train --config edsr_baseline_x3 --workdir runs/edsr_baseline_x3 \
        --config.init_from=runs/edsr_baseline_x2

As ``edsr_baseline_x2`` with LR patches 48x48 (HR 144x144) and TFDS ``div2k/bicubic_x3``. Every
tensor of the x2 run whose name and shape match is copied (all but the x3 upsampler conv), as the
official demo.sh does with ``--pre_train``; ``init_from`` is used only for a fresh workdir. Expected
(published numbers; not yet reproduced with this code): about 30.9 dB on DIV2K 0801-0900 (RGB;
official model 30.92). Run time (an estimate, not measured): roughly 10-12 h on one A100/H100-class
GPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x3 from EDSR baseline x2."""
    config = default_lib.get_config()
    config.scales = (3,)
    config.init_from = "runs/edsr_baseline_x2"  # the x2 workdir (or an exported/converted x2 model)
    return config
