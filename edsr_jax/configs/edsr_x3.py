"""The full EDSR x3, initialised from the trained x2 model (paper, Section 4.2).

    edsr-jax train --config edsr_x3 --workdir runs/edsr_x3 \
        --config.init_from=runs/edsr_x2

Every tensor of the x2 run whose name and shape match is copied (all but the x3 upsampler conv); the
rest starts fresh, and the recipe is otherwise ``edsr_x2``'s. ``init_from`` is used only for a fresh
workdir; a rerun resumes from the workdir's own checkpoints.

Expected (published numbers; not yet reproduced with this code): about 31.26 dB on DIV2K 0801-0900
(RGB; paper) and 34.65 dB on Set5 (Y; paper). Run time (an estimate from the arithmetic, not
measured): 9.7 TFLOP of convolutions per step (forward and backward, batch 16); 300k steps at 40-60
% of an H100/H200's bf16 matrix rate (about 790 TFLOP/s on an H200;
``experiments/perf/device_check.py`` measures it) take 1.7-2.6 h. Not feasible on a CPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR x3 from EDSR x2."""
    config = default_lib.get_config()
    default_lib.use_full_edsr(config)  # B32, F256, residual scaling 0.1
    config.scales = (3,)
    config.init_from = "runs/edsr_x2"  # the x2 workdir (or an exported/converted x2 model)
    return config
