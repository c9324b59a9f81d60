"""The embedded demo's run: a 4-block, 48-feature EDSR x2 on the scikit-image photographs.

The same settings as ``edsr-jax demo`` (defined in ``edsr_jax.demo.demo_config``), as a config for
the training command; it trains 800 steps (batch 16 of 32x32 LR patches, Adam at 1e-3 with 5 %
warm-up and cosine decay, mostly-flat patches redrawn) and validates on the held-out photographs
(Y-PSNR, shave 2):

    edsr-jax train --config configs/demo.py --workdir runs/demo
    edsr-jax eval --checkpoint runs/demo --data-dir ../shared/data/benchmarks --datasets Set5 --scales 2

Expected: about 7 minutes on an unloaded 2-core CPU (0.53 s per step); about +0.9 dB over bicubic
on Set5 x2 (experiments/RESULTS.md, "Demo"). ``edsr-jax demo`` picks the step count from a time
budget instead, and prints the table and the figure.
"""

from edsr_jax import demo


def get_config():
    """The demo configuration (800 steps)."""
    return demo.demo_config(num_train_steps=800)
