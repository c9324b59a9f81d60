"""The full EDSR (B32, F256, residual scaling 0.1) x2 on DIV2K with the paper's recipe.

    edsr-jax train --config edsr_x2 --workdir runs/edsr_x2

300k updates of batch 16 (48x48 LR patches), Adam lr 1e-4 halved at 200k, L1 loss, float32 as in the
paper (``--config.dtype=bfloat16`` computes in bf16 with float32 parameters, optimizer state and
loss: faster on GPUs/TPUs, not validated against the paper's numbers). x3 and x4 start from this run
(``edsr_x3.py``, ``edsr_x4.py``).

Expected (published numbers; not yet reproduced with this code): about 35.0 dB on DIV2K 0801-0900
(RGB, shave 8; paper 35.03) and 38.11 dB on Set5 (Y; paper). Run time (an estimate, not measured):
roughly 2-3 days on one A100/H100-class GPU (43M parameters).
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR x2."""
    config = default_lib.get_config()
    default_lib.use_full_edsr(config)  # B32, F256, residual scaling 0.1
    return config
