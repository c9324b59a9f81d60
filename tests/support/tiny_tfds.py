"""A tiny DIV2K-like TFDS dataset (``div2k_tiny/bicubic_x2`` and ``_x3``), prepared as ArrayRecord.

Image i's HR is a nearest-upsampled random image (so ``hr == nearest_up(lr, s)`` at every scale);
TFDS stores each configuration in its own hashed order, as with the real ``div2k``. Preparing
needs TensorFlow; reading it (``edsr_jax.data.sources``) does not.
"""

import numpy as np
import tensorflow_datasets as tfds

from support.images import nearest_up

NAME = "div2k_tiny"
SCALES = (2, 3)
NUM_TRAIN, NUM_VALIDATION = 6, 2


def hr_image(i: int) -> np.ndarray:
    """The HR image of example ``i``: LR height 10 + i % 7 at x6, width 12."""
    return nearest_up(np.random.default_rng(i).integers(0, 256, (10 + i % 7, 12, 3), dtype=np.uint8), 6)


class Div2kTiny(tfds.core.GeneratorBasedBuilder):
    """DIV2K's features (``lr``, ``hr``) and splits, a few small images."""

    VERSION = tfds.core.Version("2.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=f"bicubic_x{s}") for s in SCALES]

    def _info(self):
        images = {"lr": tfds.features.Image(), "hr": tfds.features.Image()}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(images))

    def _split_generators(self, dl_manager):
        del dl_manager
        return {
            "train": self._generate_examples(0, NUM_TRAIN),
            "validation": self._generate_examples(100, NUM_VALIDATION),
        }

    def _generate_examples(self, first: int, count: int):
        s = int(self.builder_config.name[-1])
        for i in range(first, first + count):
            hr = hr_image(i)
            yield str(i), {"hr": hr, "lr": hr[::s, ::s]}


def prepare(data_dir: str, file_format: str = "array_record", scales=SCALES) -> str:
    """Prepares the configurations of ``scales`` in ``data_dir``; returns ``data_dir``."""
    for s in scales:
        builder = Div2kTiny(config=f"bicubic_x{s}", data_dir=data_dir, file_format=file_format)
        builder.download_and_prepare()
    return data_dir
