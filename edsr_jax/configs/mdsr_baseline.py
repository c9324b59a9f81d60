"""MDSR baseline (B16, F64, scales 2/3/4) on DIV2K: one random scale per step, 650k steps.

    edsr-jax train --config mdsr_baseline --workdir runs/mdsr_baseline

Each step draws its scale from (seed, step); only the shared trunk and that scale's pre-processing
blocks and upsampler (and their Adam state) are updated. LR patches are 48x48 for every scale.
Validation reports PSNR per scale on DIV2K 0801-0810.

Expected (published numbers; not yet reproduced with this code): about 34.63 / 30.94 / 28.97 dB
(x2/x3/x4) on DIV2K 0801-0900 (RGB; official model). Run time (an estimate from the arithmetic, not
measured): 0.45 (mean over the scales) TFLOP of convolutions per step (forward and backward, batch
16); 650k steps at 40-60 % of an H100/H200's bf16 matrix rate (about 790 TFLOP/s on an H200;
``experiments/perf/device_check.py`` measures it) take 10-16 min of arithmetic; launch-bound, 11-27
min at 1,000-400 steps/s. Not feasible on a CPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """MDSR baseline."""
    config = default_lib.get_config()
    config.model.arch = "mdsr"
    config.scales = (2, 3, 4)
    config.num_train_steps = 650_000
    return config
