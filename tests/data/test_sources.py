"""Image sources (edsr_jax.data.sources): DIV2K folders with real or made LR images, TFDS (mock
data), folders, the scikit-image photographs, too-small images, shards, and evaluation samples."""

import io
import os
import re

import numpy as np
import pytest
from PIL import Image
from support.configs import pipeline_config
from support.images import div2k_from_set5, make_div2k, nearest_up, write_png

from edsr_jax.data import pipeline, sources
from edsr_jax.data.benchmarks import Sample
from edsr_jax.errors import UserError
from edsr_jax.imaging.resize import imresize


def test_set5_patches_downscale_to_their_matlab_lr_and_missing_lr_is_made(set5_dir, tmp_path):
    real = pipeline_config(data_dir=div2k_from_set5(set5_dir, tmp_path / "real", True), train_range=(1, 5))
    real.patch_size = 24
    batch = next(pipeline.create_train_iterator(real, start_step=0, process_index=0, process_count=1))
    margin = 3  # LR pixels whose x2 bicubic taps reach outside the HR patch
    inner = lambda a: a[margin:-margin, margin:-margin]  # noqa: E731
    for lr, hr in zip(batch["lr"], batch["hr"], strict=True):
        # MATLAB resizes H first, rounding in between: a transposed patch matches the resize of
        # the transposed HR patch, so either order may be the one that was used.
        down = imresize(hr, 0.5, boundary="replicate")
        down_t = imresize(hr.transpose(1, 0, 2), 0.5, boundary="replicate").transpose(1, 0, 2)
        assert np.array_equal(inner(down), inner(lr)) or np.array_equal(inner(down_t), inner(lr))
    made_dir = div2k_from_set5(set5_dir, tmp_path / "made", False)
    made = pipeline_config(data_dir=made_dir, train_range=(1, 5))
    made.patch_size = 24
    batch_made = next(pipeline.create_train_iterator(made, start_step=0, process_index=0, process_count=1))
    np.testing.assert_array_equal(batch_made["lr"], batch["lr"])  # MATLAB-exact resize, bit for bit
    np.testing.assert_array_equal(batch_made["hr"], batch["hr"])


def mock_div2k(calls, n=8):
    """``as_dataset_fn`` for tfds.testing.mock_data: paired DIV2K-like examples of every scale.

    Image i has LR (10 + i, 12) at x6; each scale's HR is the nearest-upsampled image, as in the
    real builder each configuration lists the images in its own order (reversed here for x3).
    Like TFDS with ``SkipDecoding``, it yields PNG bytes when decoders are passed.
    """
    import tensorflow as tf

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    def as_dataset(self, split, decoders=None, **kwargs):
        calls.append((self.name, self.builder_config.name, str(split)))
        s = int(self.builder_config.name[-1])
        m = re.search(r"\[(\d+):(\d+)\]", str(split))
        first, last = map(int, m.groups()) if m else (0, n)
        order = list(range(n))[::-1] if s == 3 else list(range(n))

        def gen():
            for i in order[first:last]:
                hr = nearest_up(np.random.default_rng(i).integers(0, 256, (10 + i, 12, 3), dtype=np.uint8), 6)
                ex = {"hr": hr, "lr": hr[::s, ::s]}
                yield {k: png(v) for k, v in ex.items()} if decoders else ex

        spec = tf.TensorSpec((), tf.string) if decoders else tf.TensorSpec((None, None, 3), tf.uint8)
        return tf.data.Dataset.from_generator(gen, output_signature={"lr": spec, "hr": spec})

    return as_dataset


def test_tfds_source_with_paired_mock_data_and_sharded_slices():
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []
    cfg = pipeline_config(source="tfds", tfds_name="div2k/bicubic_x2", train_range=(3, 6))
    with tfds.testing.mock_data(as_dataset_fn=mock_div2k(calls)):
        batch = next(pipeline.create_train_iterator(cfg, start_step=0, process_index=1, process_count=2))
        evals = pipeline.create_eval_samples(cfg)
    assert ("div2k", "bicubic_x2", "train[4:6]") in calls  # process 1 of 2 reads images 5..6
    assert ("div2k", "bicubic_x2", "validation[0:2]") in calls
    assert batch["lr"].shape == (4, 8, 8, 3)
    for lr, hr in zip(batch["lr"], batch["hr"], strict=True):
        np.testing.assert_array_equal(hr, nearest_up(lr, 2))
    assert all(isinstance(s, Sample) for s in evals[2])
    assert [s.lr.shape for s in evals[2]] == [(30, 36, 3), (33, 36, 3)]


def test_tfds_mdsr_pairs_scales_by_hr_image_across_builder_orders():
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []
    cfg = pipeline_config(source="tfds", tfds_name="div2k/bicubic_x2", train_range=(1, 3))
    cfg.scales = (2, 3)
    with tfds.testing.mock_data(as_dataset_fn=mock_div2k(calls)):
        pairs = sources.load_pairs(cfg.data, "train", (2, 3), 8)
    assert ("div2k", "bicubic_x3", "train") in calls
    for hr, lr2, lr3 in zip(pairs.hr, pairs.lr[2], pairs.lr[3], strict=True):
        np.testing.assert_array_equal(hr, nearest_up(lr2, 2))
        np.testing.assert_array_equal(hr, nearest_up(lr3, 3))


def test_small_image_error_names_the_file_and_skip_warns(tmp_path):
    root = make_div2k(tmp_path, range(1, 3))
    small = np.zeros((6, 20, 3), np.uint8)
    write_png(str(tmp_path / "DIV2K_train_HR" / "0003.png"), nearest_up(small, 2))
    write_png(str(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0003x2.png"), small)
    cfg = pipeline_config(data_dir=root, train_range=(1, 3))
    with pytest.raises(UserError, match=r"0003\.png: x2 LR image is 20x6, smaller than the 8x8"):
        pipeline.create_train_iterator(cfg, start_step=0, process_index=0, process_count=1)
    cfg.data.skip_small = "skip"
    with pytest.warns(UserWarning, match=r"0003\.png.*skipped"):
        pairs = sources.load_pairs(cfg.data, "train", (2,), 8)
    assert len(pairs) == 2


def test_skimage_source_splits_and_eval_samples_are_aligned():
    assert set(sources.SKIMAGE_TRAIN).isdisjoint(sources.SKIMAGE_VAL)
    cfg = pipeline_config(source="skimage")
    cfg.scales = (3,)
    evals = pipeline.create_eval_samples(cfg)
    assert list(evals) == [3]
    assert [s.name for s in evals[3]] == list(sources.SKIMAGE_VAL)
    for s in evals[3]:
        assert s.hr.shape == (s.lr.shape[0] * 3, s.lr.shape[1] * 3, 3) and s.lr.dtype == np.uint8
        np.testing.assert_array_equal(s.lr, imresize(s.hr, 1 / 3, boundary="replicate"))


def test_folder_source_numbers_images_by_sorted_name(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.png"):
        write_png(str(tmp_path / "imgs" / name), rng.integers(0, 256, (30, 34, 3), dtype=np.uint8))
    cfg = pipeline_config(source="folder", data_dir=str(tmp_path / "imgs"), train_range=(2, 3))
    pairs = sources.load_pairs(cfg.data, "train", (2,), 8)
    assert [os.path.basename(n) for n in pairs.names] == ["b.png", "c.png"]
    assert pairs.hr[0].shape == (30, 34, 3) and pairs.lr[2][0].shape == (15, 17, 3)
    cfg.data.train_range = (1, 4)
    with pytest.raises(UserError, match=r"image range goes up to 4 but .*imgs holds 3 images"):
        sources.load_pairs(cfg.data, "train", (2,), 8)


def test_shards_are_contiguous_disjoint_and_cover_every_image():
    numbers = list(range(1, 8))
    shards = [sources.shard_numbers(numbers, i, 3) for i in range(3)]
    assert sum(shards, []) == numbers and all(shards)
    with pytest.raises(UserError, match=r"process_index must be in \[0, 3\), got 3"):
        sources.shard_numbers(numbers, 3, 3)
    with pytest.raises(UserError, match="2 images cannot be shared by 3 processes"):
        sources.shard_numbers([1, 2], 0, 3)


def test_unknown_source_degradation_and_split_name_the_config_field():
    cfg = pipeline_config(source="imagenet")
    with pytest.raises(UserError, match=r"config\.data\.source must be one of .*'imagenet'"):
        sources.load_pairs(cfg.data, "train", (2,), 8)
    cfg = pipeline_config(degradation="blurry")
    with pytest.raises(UserError, match=r"config\.data\.degradation must be one of .*'blurry'"):
        sources.load_pairs(cfg.data, "train", (2,), 8)
    with pytest.raises(UserError, match="split must be 'train' or 'val'"):
        sources.load_pairs(pipeline_config().data, "test", (2,), 8)
