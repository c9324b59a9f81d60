"""Small configurations: a tiny training run of ``configs/test.py``, and an input-pipeline config."""

import ml_collections

from edsr_jax.cli import config_flags
from support.paths import TEST_CONFIG

# A tiny run: B1 F8 on 12x12 LR patches, batch 8 (one example per fake device).
TINY = {
    "model.num_blocks": "1",
    "model.num_features": "8",
    "batch_size": "8",
    "patch_size": "12",
    "num_train_steps": "6",
    "log_every_steps": "2",
    "checkpoint_every_steps": "2",
    "eval_every_steps": "0",
    "eval.num_images": "1",
    "eval.image_crop": "16",
}


def tiny_config(cache_dir, **overrides):
    """``configs/test.py`` with :data:`TINY`, the image cache and ``overrides`` (``a__b=v`` sets ``a.b``)."""
    fields = {
        **TINY,
        "data.cache_dir": cache_dir,
        **{k.replace("__", "."): str(v) for k, v in overrides.items()},
    }
    config = config_flags.load_config(TEST_CONFIG)
    return config_flags.apply_overrides(config, list(fields.items()))


def pipeline_config(**data):
    """A small training config (the fields create_train_iterator reads); ``data`` sets data.*."""
    fields = dict(
        source="div2k_folder",
        tfds_name="",
        data_dir="",
        degradation="bicubic",
        train_range=(1, 4),
        val_range=(801, 802),
        cache_dir="",
        skip_small="error",
        flat_patch_threshold=0.0,
        threads=2,
        workers=0,
        prefetch=2,
    )
    fields.update(data)
    return ml_collections.ConfigDict(dict(seed=0, batch_size=8, patch_size=8, scales=(2,), data=fields))
