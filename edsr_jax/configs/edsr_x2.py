"""The full EDSR (B32, F256, residual scaling 0.1) x2 on DIV2K with the paper's recipe.

    edsr-jax train --config edsr_x2 --workdir runs/edsr_x2

300k updates of batch 16 (48x48 LR patches), Adam learning rate 1e-4 halved at 200k, L1 loss. Precision:
``auto`` (bf16 on GPUs/TPUs, with float32 parameters, optimizer state and loss; its cost in PSNR on
a small run: ``experiments/perf/RESULTS.md``, "Precision"); ``--config.precision=fp32`` computes as
the paper did. x3 and x4 start from this run (``edsr_x3.py``, ``edsr_x4.py``).

Expected (published numbers; not yet reproduced with this code): about 35.0 dB on DIV2K 0801-0900
(RGB, shave 8; paper 35.03) and 38.11 dB on Set5 (Y; paper). Run time (an estimate from the
arithmetic, not measured): 9.0 TFLOP of convolutions per step (forward and backward, batch 16); 300k
steps at 40-60 % of an H100/H200's bf16 matrix rate (about 790 TFLOP/s on an H200;
``experiments/perf/device_check.py`` measures it) take 1.6-2.4 h. Not feasible on a CPU.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR x2."""
    config = default_lib.get_config()
    default_lib.use_full_edsr(config)  # B32, F256, residual scaling 0.1
    return config
