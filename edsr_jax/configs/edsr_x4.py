"""The full EDSR x4, initialised from the trained x2 model (paper, Section 4.2).

    edsr-jax train --config edsr_x4 --workdir runs/edsr_x4 \
        --config.init_from=runs/edsr_x2

The x2 upsampler's conv has the shape of the first x4 stage and is copied with everything else that
matches; only the second x4 stage starts fresh. ``init_from`` is used only for a fresh workdir.

Expected (published numbers; not yet reproduced with this code): about 29.25 dB on DIV2K 0801-0900
(RGB; paper) and 32.46 dB on Set5 (Y; paper). Run time (an estimate from the arithmetic, not
measured): 11.1 TFLOP of convolutions per step (forward and backward, batch 16); 300k steps at 40-60
% of an H100/H200's bf16 matrix rate (about 790 TFLOP/s on an H200;
``experiments/perf/device_check.py`` measures it) take 2.0-2.9 h. Not feasible on a CPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR x4 from EDSR x2."""
    config = default_lib.get_config()
    default_lib.use_full_edsr(config)  # B32, F256, residual scaling 0.1
    config.scales = (4,)
    config.init_from = "runs/edsr_x2"  # the x2 workdir (or an exported/converted x2 model)
    return config
