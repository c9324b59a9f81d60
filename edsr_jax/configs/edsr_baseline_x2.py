"""EDSR baseline (B16, F64) x2 on DIV2K with the paper's recipe.

    edsr-jax train --config edsr_baseline_x2 --workdir runs/edsr_baseline_x2

300k updates of batch 16 (48x48 LR patches), Adam learning rate 1e-4 halved at 200k, L1 loss; validation on
DIV2K 0801-0810 every 10k steps. Data: TFDS ``div2k/bicubic_x2`` (downloads about 4 GB on first use;
offline, point ``--config.data.source=div2k_folder --config.data.data_dir=...`` at the official
zips' contents). x3 and x4 start from this run (``edsr_baseline_x3.py``, ``edsr_baseline_x4.py``).

Expected (published numbers; not yet reproduced with this code): about 34.6 dB on DIV2K 0801-0900
(RGB, shave 8; official model 34.61). Run time (an estimate from the arithmetic, not measured): 0.30
TFLOP of convolutions per step (forward and backward, batch 16); 300k steps at 40-60 % of an
H100/H200's bf16 matrix rate (about 790 TFLOP/s on an H200; ``experiments/perf/device_check.py``
measures it) take 3-5 min of arithmetic; small models are launch-bound: about 5 min at 1,000
steps/s, 12 min at 400 steps/s (``--config.steps_per_call`` helps). Not feasible on a CPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x2."""
    return default_lib.get_config()  # the defaults are this run
