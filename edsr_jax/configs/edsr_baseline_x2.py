"""EDSR baseline (B16, F64) x2 on DIV2K with the paper's recipe.

    edsr-jax train --config edsr_baseline_x2 --workdir runs/edsr_baseline_x2

Target (published, not yet reproduced here): about 34.6 dB on DIV2K 0801-0900 (RGB; official 34.61).
Run time (an estimate from the arithmetic, not measured, at 40-60 % of an H100/H200's bf16 rate):
0.30 TFLOP per step, 3-5 min of arithmetic; launch-bound, 5-12 min at 1,000-400 steps/s.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """EDSR baseline x2."""
    return default_lib.get_config()  # the defaults are this run
