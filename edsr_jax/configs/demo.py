"""The embedded demo's run: a 4-block, 48-feature EDSR x2 on the scikit-image photographs.

    edsr-jax train --config demo --workdir runs/demo

Expected: a few minutes on a CPU; the gain over bicubic on Set5 x2: RESULTS.md "Demo".
"""

from edsr_jax.configs import default as default_lib

# The demo's upscaling factor.
SCALE = 2


def get_config(num_train_steps: int = 800):
    """The demo configuration; ``num_train_steps`` is the length of the cosine schedule."""
    config = default_lib.get_config()
    config.model.num_blocks = 4  # B
    config.model.num_features = 48  # F
    config.scales = (SCALE,)
    config.batch_size = 16
    config.patch_size = 32  # LR pixels
    default_lib.apply_cpu_recipe(config)  # skimage photos, peak 1e-3, warm-up + cosine, flat patches redrawn
    config.num_train_steps = int(num_train_steps)
    config.log_every_steps = 10**9  # the demo shows a progress bar instead of log lines
    config.checkpoint_every_steps = 0  # only at the end (and on a stop request)
    config.keep_checkpoints = 1
    config.async_checkpoints = False
    config.eval_every_steps = 0  # validation at the end only
    config.eval.num_images = 0  # all held-out photographs
    config.eval.protocol = "benchmark"  # Y channel, shave = scale, like the demo's table
    return config
