"""A tiny EDSR (B2, F16) trained for 60 steps on the scikit-image sample photographs, x2.

No download: the photographs ship with scikit-image (12 for training; astronaut, chelsea and
coffee held out for validation). Checkpoints at steps 20, 30 (with validation), 40 and 60 (with
validation); rerunning the command resumes, and after the run ``edsr_jax.load_model(W)`` returns
the trained model.

    edsr-jax train --config test --workdir /tmp/edsr_test

Expected: about a minute on a shared 2-core CPU (imports, image decoding and
compilation included; the steps themselves run at 13-20 steps/s); the training loss (L1, 0..255)
falls from about 42 (steps 1-10) to about 14 (steps 51-60); validation PSNR (RGB, shave 8) about
25.0 dB at step 60. A smoke test of the whole program, not a result.
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
