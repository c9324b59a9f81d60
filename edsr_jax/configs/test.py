"""A tiny EDSR (B2, F16) trained for 60 steps on the scikit-image sample photographs, x2.

    edsr-jax train --config test --workdir /tmp/edsr_test

Expected: about a minute on a CPU; the L1 loss falls from about 42 to about 14 and validation PSNR
reaches about 25.0 dB. A smoke test of the whole program, not a result.
"""

from edsr_jax.configs import default as default_lib


def get_config():
    """The test configuration."""
    config = default_lib.get_config()
    config.model.num_blocks = 2
    config.model.num_features = 16
    config.batch_size = 16
    config.patch_size = 24
    default_lib.apply_cpu_recipe(config)  # skimage photos, peak 1e-3, warm-up + cosine, flat patches redrawn
    config.num_train_steps = 60
    config.log_every_steps = 10
    config.checkpoint_every_steps = 20
    config.keep_checkpoints = 2
    config.eval_every_steps = 30
    config.eval.num_images = 3
    return config
