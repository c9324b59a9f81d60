"""Image sources (edsr_jax.data.sources): DIV2K folders with real or made LR images, TFDS
(ArrayRecord, read without TensorFlow), folders, the scikit-image photographs, too-small images,
and evaluation samples."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from support.configs import pipeline_config
from support.images import div2k_from_set5, make_div2k, nearest_up, write_png

from edsr_jax.data import cache, pipeline, sources
from edsr_jax.data.benchmarks import Sample
from edsr_jax.errors import UserError
from edsr_jax.imaging.resize import imresize


def test_set5_patches_downscale_to_their_matlab_lr_and_missing_lr_is_made(set5_dir, tmp_path):
    real = pipeline_config(data_dir=div2k_from_set5(set5_dir, tmp_path / "real", True), train_range=(1, 5))
    real.patch_size = 24
    batch = next(pipeline.create_train_iterator(real, start_step=0))
    margin = 3  # LR pixels whose x2 bicubic taps reach outside the HR patch
    inner = lambda a: a[margin:-margin, margin:-margin]  # noqa: E731
    for lr, hr in zip(batch["low_res"], batch["high_res"], strict=True):
        # MATLAB resizes H first, rounding in between: a transposed patch matches the resize of
        # the transposed HR patch, so either order may be the one that was used.
        down = imresize(hr, 0.5, boundary="replicate")
        down_t = imresize(hr.transpose(1, 0, 2), 0.5, boundary="replicate").transpose(1, 0, 2)
        assert np.array_equal(inner(down), inner(lr)) or np.array_equal(inner(down_t), inner(lr))
    made_dir = div2k_from_set5(set5_dir, tmp_path / "made", False)
    made = pipeline_config(data_dir=made_dir, train_range=(1, 5))
    made.patch_size = 24
    batch_made = next(pipeline.create_train_iterator(made, start_step=0))
    np.testing.assert_array_equal(batch_made["low_res"], batch["low_res"])  # MATLAB-exact resize, bit for bit
    np.testing.assert_array_equal(batch_made["high_res"], batch["high_res"])


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A prepared ArrayRecord ``div2k_tiny`` (x2, x3) and the config reading it."""
    from support import tiny_tfds

    return tiny_tfds.prepare(str(tmp_path_factory.mktemp("tfds")))


def test_tfds_source_reads_array_record_batches_and_eval_samples(tiny_tfds):
    from support import tiny_tfds as tiny

    cfg = pipeline_config(source="tfds", tfds_name=tiny.NAME, data_dir=tiny_tfds, train_range=(3, 6))
    source = sources.open_source(cfg.data, "train", (2,))
    assert source.names[0] == "div2k_tiny/bicubic_x2:train#2" and len(source) == 4
    batch = next(pipeline.create_train_iterator(cfg, start_step=0))
    assert batch["low_res"].shape == (8, 8, 8, 3)
    for lr, hr in zip(batch["low_res"], batch["high_res"], strict=True):
        np.testing.assert_array_equal(hr, nearest_up(lr, 2))
    evals = pipeline.create_eval_samples(cfg)
    assert all(isinstance(s, Sample) for s in evals[2]) and len(evals[2]) == tiny.NUM_VALIDATION
    heights = sorted(s.lr.shape[0] for s in evals[2])
    assert heights == sorted(3 * (10 + i % 7) for i in range(100, 100 + tiny.NUM_VALIDATION))


def test_tfds_mdsr_pairs_scales_by_hr_image_across_builder_orders(tiny_tfds):
    from support import tiny_tfds as tiny

    cfg = pipeline_config(
        source="tfds", tfds_name=f"{tiny.NAME}/bicubic_x2", data_dir=tiny_tfds, train_range=(1, 6)
    )
    pairs = cache.PairCache(sources.open_source(cfg.data, "train", (2, 3)))
    for i in range(len(pairs)):
        hr, lr2 = pairs.pair(i, 2)
        _, lr3 = pairs.pair(i, 3)
        np.testing.assert_array_equal(hr, nearest_up(lr2, 2))
        np.testing.assert_array_equal(hr, nearest_up(lr3, 3))


def test_tfds_is_read_without_tensorflow(tiny_tfds):
    # A subprocess in which TensorFlow cannot be found (the finders hide it, as on a machine
    # without it): the source opens, aligns the scales and decodes with Pillow.
    code = textwrap.dedent(
        f"""
        import sys
        from support.no_tensorflow import hide_tensorflow
        hide_tensorflow()
        import ml_collections
        from edsr_jax.data import cache, sources
        data = ml_collections.ConfigDict(dict(source="tfds", tfds_name="div2k_tiny", data_dir={tiny_tfds!r},
            degradation="bicubic", train_range=(1, 6), val_range=(801, 802)))
        pairs = cache.PairCache(sources.open_source(data, "train", (2, 3)))
        print([pairs.pair(i, 3)[1].shape for i in range(len(pairs))])
        print(sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"))
        """
    )
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": tests}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    shapes, modules = out.stdout.strip().splitlines()[-2:]
    assert shapes.count("(") == 6 and modules == "[]"


def test_a_missing_or_tfrecord_dataset_says_how_to_prepare_it(tmp_path):
    cfg = pipeline_config(source="tfds", tfds_name="div2k", data_dir=str(tmp_path))
    with pytest.raises(UserError, match=r"div2k/bicubic_x2 is not prepared in .*file_format='array_record'"):
        sources.open_source(cfg.data, "train", (2,))


def test_a_tfrecord_prepared_dataset_says_how_to_convert_it(tmp_path):
    from support import tiny_tfds as tiny

    data_dir = tiny.prepare(str(tmp_path), file_format="tfrecord", scales=(2,))
    cfg = pipeline_config(source="tfds", tfds_name=tiny.NAME, data_dir=data_dir)
    with pytest.raises(UserError, match=r"not in the ArrayRecord format .*tfds convert_format"):
        sources.open_source(cfg.data, "train", (2,))


def test_tfds_names_get_the_scale_of_each_builder():
    assert sources.tfds_name_for_scale("div2k", "bicubic", 3) == "div2k/bicubic_x3"
    assert sources.tfds_name_for_scale("div2k/unknown_x2", "bicubic", 4) == "div2k/unknown_x4"
    with pytest.raises(UserError, match=r"config\.data\.tfds_name must end in _x<scale>"):
        sources.tfds_name_for_scale("div2k/bicubic", "bicubic", 2)


def test_small_image_error_names_the_file_and_skip_warns(tmp_path):
    root = make_div2k(tmp_path, range(1, 3), image_id_channel=True)
    small = np.zeros((6, 20, 3), np.uint8)
    write_png(str(tmp_path / "DIV2K_train_HR" / "0003.png"), nearest_up(small, 2))
    write_png(str(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0003x2.png"), small)
    cfg = pipeline_config(data_dir=root, train_range=(1, 3))
    with pytest.raises(UserError, match=r"0003\.png \(x2 LR 20x6\) is smaller than the 8x8 LR patch"):
        pipeline.create_train_iterator(cfg, start_step=0)
    cfg.data.skip_small = "skip"
    with pytest.warns(UserWarning, match=r"skipped 1 images smaller .*0003\.png"):
        it = pipeline.create_train_iterator(cfg, start_step=0)
    used = {int(np.unique(hr[..., 2])[0]) for b in (next(it) for _ in range(4)) for hr in b["high_res"]}
    assert len(used) == 2  # the two large images only


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
    source = sources.open_source(cfg.data, "train", (2,))
    assert [os.path.basename(n) for n in source.names] == ["b.png", "c.png"]
    hr, lr = cache.PairCache(source).pair(0, 2)
    assert hr.shape == (30, 34, 3) and lr.shape == (15, 17, 3) and source.lr_shape(0, 2) == (15, 17)
    cfg.data.train_range = (1, 4)
    with pytest.raises(UserError, match=r"image range goes up to 4 but .*imgs holds 3 images"):
        sources.open_source(cfg.data, "train", (2,))


def dihedral(a):
    """The 8 flips and 90-degree rotations of an (H, W, C) array."""
    for k in range(4):
        r = np.rot90(a, k)
        yield r
        yield r[:, ::-1]


def crops(image, size):
    return {
        image[y : y + size, x : x + size].tobytes()
        for y in range(image.shape[0] - size + 1)
        for x in range(image.shape[1] - size + 1)
    }


def test_paired_folder_trains_on_the_lr_files_matched_by_name(tmp_path):
    rng = np.random.default_rng(0)
    lr_files = {}
    # Your own degradation: LR files that are not the bicubic of HR (noise), named three ways.
    for stem, lr_name in (("a", "LR/ax2.png"), ("b", "LR/b.png"), ("c", "LR/X2/cx2.png")):
        hr = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        lr = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
        write_png(str(tmp_path / "HR" / f"{stem}.png"), hr)
        write_png(str(tmp_path / lr_name), lr)
        lr_files[stem] = (hr, lr)
    cfg = pipeline_config(source="paired_folder", data_dir=str(tmp_path), train_range=(1, 3))
    source = sources.open_source(cfg.data, "train", (2,))
    assert [os.path.basename(p) for p in source.lr_paths[2]] == ["ax2.png", "b.png", "cx2.png"]
    windows = {
        stem: (
            set().union(*(crops(t, 8) for t in dihedral(lr))),
            set().union(*(crops(t, 16) for t in dihedral(hr))),
        )
        for stem, (hr, lr) in lr_files.items()
    }
    batch = next(pipeline.create_train_iterator(cfg, start_step=0))
    for lr_patch, hr_patch in zip(batch["low_res"], batch["high_res"], strict=True):
        # Each LR patch is a crop of one LR file (flipped or rotated), its HR patch a crop of that
        # image's HR file: the LR was read, not made by bicubic.
        owners = [stem for stem, (lr_w, hr_w) in windows.items() if lr_patch.tobytes() in lr_w]
        assert len(owners) == 1 and hr_patch.tobytes() in windows[owners[0]][1]


def test_paired_lr_too_large_for_its_hr_names_the_file(tmp_path):
    rng = np.random.default_rng(1)
    write_png(str(tmp_path / "HR" / "a.png"), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    write_png(str(tmp_path / "LR" / "ax2.png"), rng.integers(0, 256, (21, 28, 3), dtype=np.uint8))
    cfg = pipeline_config(source="paired_folder", data_dir=str(tmp_path), train_range=(1, 1))
    with pytest.raises(
        UserError,
        match=r"a\.png: LR image \S*LR/ax2\.png \(28x21\) times scale 2 is larger than its HR image 56x40",
    ):
        next(pipeline.create_train_iterator(cfg, start_step=0))
    write_png(str(tmp_path / "HR" / "b.png"), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    cfg.data.train_range = (1, 2)
    with pytest.raises(UserError, match=r"no LR image for .*b\.png at x2 .*looked for bx2\.\* and b\.\*"):
        sources.open_source(cfg.data, "train", (2,))


def test_unknown_source_degradation_and_split_name_the_config_field():
    cfg = pipeline_config(source="imagenet")
    with pytest.raises(UserError, match=r"config\.data\.source must be one of .*'imagenet'"):
        sources.open_source(cfg.data, "train", (2,))
    cfg = pipeline_config(degradation="blurry")
    with pytest.raises(UserError, match=r"config\.data\.degradation must be one of .*'blurry'"):
        sources.open_source(cfg.data, "train", (2,))
    with pytest.raises(UserError, match=r"split must be one of \('train', 'val'\), got 'test'"):
        sources.open_source(pipeline_config().data, "test", (2,))
    with pytest.raises(UserError, match=r"config\.data\.source='folder' needs config\.data\.data_dir"):
        sources.open_source(pipeline_config(source="folder").data, "train", (2,))
