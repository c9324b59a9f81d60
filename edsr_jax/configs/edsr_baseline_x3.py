"""EDSR baseline (B16, F64) x3, initialised from the trained baseline x2 model (paper, Section 4.2).

    edsr-jax train --config edsr_baseline_x3 --workdir runs/edsr_baseline_x3 \
        --config.init_from=runs/edsr_baseline_x2

As ``edsr_baseline_x2`` with LR patches 48x48 (HR 144x144) and TFDS ``div2k/bicubic_x3``. Every
tensor of the x2 run whose name and shape match is copied (all but the x3 upsampler conv), as the
official demo.sh does with ``--pre_train``; ``init_from`` is used only for a fresh workdir. Expected
(published numbers; not yet reproduced with this code): about 30.9 dB on DIV2K 0801-0900 (RGB;
official model 30.92). Run time (an estimate from the arithmetic, not measured): 0.35 TFLOP of
convolutions per step (forward and backward, batch 16); 300k steps at 40-60 % of an H100/H200's bf16
matrix rate (about 790 TFLOP/s on an H200; ``experiments/perf/device_check.py`` measures it) take
4-5 min of arithmetic; launch-bound, 5-12 min at 1,000-400 steps/s. Not feasible on a CPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x3 from EDSR baseline x2."""
    config = default_lib.get_config()
    config.scales = (3,)
    config.init_from = "runs/edsr_baseline_x2"  # the x2 workdir (or an exported/converted x2 model)
    return config
