"""EDSR baseline (B16, F64) x4, initialised from the trained baseline x2 model (paper, Section 4.2).

    edsr-jax train --config edsr_baseline_x4 --workdir runs/edsr_baseline_x4 \
        --config.init_from=runs/edsr_baseline_x2

As ``edsr_baseline_x2`` with LR patches 48x48 (HR 192x192) and TFDS ``div2k/bicubic_x4``. The x2
upsampler's conv has the shape of the first x4 stage and is copied with everything else that
matches; only the second x4 stage starts fresh (the official demo.sh's ``--pre_train``).
``init_from`` is used only for a fresh workdir. Expected (published numbers; not yet reproduced with
this code): about 28.95 dB on DIV2K 0801-0900 (RGB; official model 28.95). Run time (an estimate
from the arithmetic, not measured): 0.44 TFLOP of convolutions per step (forward and backward, batch
16); 300k steps at 40-60 % of an H100/H200's bf16 matrix rate (about 790 TFLOP/s on an H200;
``experiments/perf/device_check.py`` measures it) take 5-7 min of arithmetic; launch-bound, 5-12 min
at 1,000-400 steps/s. Not feasible on a CPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x4 from EDSR baseline x2."""
    config = default_lib.get_config()
    config.scales = (4,)
    config.init_from = "runs/edsr_baseline_x2"  # the x2 workdir (or an exported/converted x2 model)
    return config
