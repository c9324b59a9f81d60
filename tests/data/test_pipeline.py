"""Input pipeline: transforms alone and inside tf.data, alignment, sources, determinism, sharding."""

import math
import os
import re
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from edsr_jax import data_sources, input_pipeline, sharding
from edsr_jax.errors import UserError
from edsr_jax.image import imresize


def make_config(**data):
    """A small training config (the fields create_train_iterator reads)."""
    fields = dict(
        source="div2k_folder", tfds_name="", data_dir=None, degradation="bicubic",
        train_range=(1, 4), val_range=(801, 802), cache_dir=None, patches_per_image=2,
        skip_small="error", flat_patch_threshold=0.0, prefetch=2,
    )  # fmt: skip
    fields.update(data)
    return ml_collections.ConfigDict(
        dict(seed=0, batch_size=8, patch_size=8, scales=(2,), data=fields)
    )


def nearest_up(lr, s):
    """HR whose s x s blocks repeat the LR pixel: every aligned transform keeps hr == nearest_up(lr)."""
    return np.repeat(np.repeat(lr, s, axis=-3), s, axis=-2)


def write_png(path, image):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path)


def make_div2k(root, numbers, lr_hw=(20, 28), scales=(2,), image_id_channel=False, seed=0):
    """DIV2K layout with random LR images and nearest-upsampled HR (exactly aligned by construction).

    With ``image_id_channel`` the blue channel holds the image number, to tell images apart.
    """
    rng = np.random.default_rng(seed)
    for n in numbers:
        part = "train" if n <= 800 else "valid"
        base = rng.integers(0, 256, (*lr_hw, 3), dtype=np.uint8)
        if image_id_channel:
            base[..., 2] = n
        # HR constant on lcm(scales) blocks, so HR == nearest_up(LR_s, s) for every scale s.
        hr = nearest_up(base, math.lcm(*scales))
        write_png(os.path.join(root, f"DIV2K_{part}_HR", f"{n:04d}.png"), hr)
        for s in scales:
            lr = hr[::s, ::s]
            write_png(os.path.join(root, f"DIV2K_{part}_LR_bicubic", f"X{s}", f"{n:04d}x{s}.png"), lr)
    return str(root)


# ---------------------------------------------------------------- transforms alone


def test_crop_pair_is_aligned_and_sized():
    rng = np.random.default_rng(1)
    lr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    hr = nearest_up(lr, 3)
    lp, hp = input_pipeline.crop_pair(lr, hr, 2, 5, 4, 3)
    assert lp.shape == (4, 4, 3) and hp.shape == (12, 12, 3)
    np.testing.assert_array_equal(lp, lr[2:6, 5:9])
    np.testing.assert_array_equal(hp, nearest_up(lp, 3))


@pytest.mark.parametrize("flags", [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
def test_each_flip_alone_acts_identically_on_lr_and_hr(flags):
    rng = np.random.default_rng(2)
    lr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    hr = nearest_up(lr, 2)
    la, ha = input_pipeline.augment_pair(lr, hr, *map(bool, flags))
    expected = {(1, 0, 0): lr[:, ::-1], (0, 1, 0): lr[::-1], (0, 0, 1): lr.transpose(1, 0, 2)}[flags]
    np.testing.assert_array_equal(la, expected)
    np.testing.assert_array_equal(ha, nearest_up(expected, 2))


def test_the_three_flips_give_the_eight_dihedral_transforms():
    lr = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    outs = set()
    for f in range(8):
        la, ha = input_pipeline.augment_pair(lr, nearest_up(lr, 2), bool(f & 1), bool(f & 2), bool(f & 4))
        np.testing.assert_array_equal(ha, nearest_up(la, 2))
        outs.add(la.tobytes())
    assert len(outs) == 8


@pytest.mark.parametrize("size", [1, 5, 6])
def test_write_augmented_equals_augment_pair_for_all_eight_transforms(size):
    patch = np.random.default_rng(size).integers(0, 256, (size + 3, size + 4, 3), dtype=np.uint8)
    view = patch[1 : 1 + size, 2 : 2 + size]  # a non-contiguous crop, as the sampler passes
    for f in range(8):
        flags = (bool(f & 1), bool(f & 2), bool(f & 4))
        out = np.zeros((size, size, 3), np.uint8)
        input_pipeline.write_augmented(out, view, *flags)
        np.testing.assert_array_equal(out, input_pipeline.augment_pair(view, view, *flags)[0])


def test_image_schedule_visits_every_image_patches_per_image_times_per_pass():
    n, ppi, b = 5, 3, 4
    seen = np.concatenate([input_pipeline.image_schedule(7, k, b, n, ppi) for k in range(n * ppi // b + 5)])
    first_pass = seen[: n * ppi]
    assert np.bincount(first_pass, minlength=n).tolist() == [ppi] * n
    # blocks of ppi consecutive patches come from one image
    assert all(len(set(first_pass[i : i + ppi])) == 1 for i in range(0, n * ppi, ppi))


def test_sample_batch_is_aligned_and_pure(tmp_path):
    root = make_div2k(tmp_path, range(1, 4))
    cfg = make_config(data_dir=root, train_range=(1, 3))
    pairs = data_sources.load_pairs(cfg.data, "train", (2,), 8)
    kw = dict(seed=3, step=11, batch=6, patch=8, scale=2, patches_per_image=2)
    lr, hr = input_pipeline.sample_batch(pairs, **kw)
    assert lr.dtype == hr.dtype == np.uint8 and lr.shape == (6, 8, 8, 3) and hr.shape == (6, 16, 16, 3)
    for a, b in zip(lr, hr, strict=True):
        np.testing.assert_array_equal(b, nearest_up(a, 2))
    lr2, hr2 = input_pipeline.sample_batch(pairs, **kw)
    np.testing.assert_array_equal(lr, lr2)
    np.testing.assert_array_equal(hr, hr2)
    lr3, _ = input_pipeline.sample_batch(pairs, **{**kw, "step": 12})
    assert not np.array_equal(lr, lr3)


def test_flat_patch_threshold_redraws_flat_patches(tmp_path):
    # Left half of the LR image is flat grey, right half noise.
    lr = np.full((16, 32, 3), 128, np.uint8)
    lr[:, 16:] = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_png(str(tmp_path / "DIV2K_train_HR" / "0001.png"), nearest_up(lr, 2))
    write_png(str(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png"), lr)
    cfg = make_config(data_dir=str(tmp_path), train_range=(1, 1))
    pairs = data_sources.load_pairs(cfg.data, "train", (2,), 4)
    kw = dict(seed=0, batch=64, patch=4, scale=2, patches_per_image=64)
    plain, _ = input_pipeline.sample_batch(pairs, step=0, **kw)
    kept, _ = input_pipeline.sample_batch(pairs, step=0, flat_patch_threshold=1.0, **kw)
    std = lambda x: x.reshape(len(x), -1).std(axis=1)
    assert (std(plain) < 1).sum() > 10  # a quarter of positions are flat without the filter
    assert (std(kept) < 1).sum() == 0


# ---------------------------------------------------------------- inside tf.data


def test_train_iterator_matches_sampler_and_is_aligned(tmp_path):
    root = make_div2k(tmp_path, range(1, 5))
    cfg = make_config(data_dir=root)
    it = input_pipeline.create_train_iterator(cfg, process_index=0, process_count=1)
    pairs = data_sources.load_pairs(cfg.data, "train", (2,), 8)
    for step in range(3):
        batch = next(it)
        assert set(batch) == {"lr", "hr", "scale"} and batch["scale"] == 2 and type(batch["scale"]) is int
        assert batch["lr"].dtype == np.uint8 and batch["lr"].shape == (8, 8, 8, 3)
        lr, hr = input_pipeline.sample_batch(
            pairs, seed=0, step=step, batch=8, patch=8, scale=2, patches_per_image=2
        )
        np.testing.assert_array_equal(batch["lr"], lr)
        np.testing.assert_array_equal(batch["hr"], hr)
        np.testing.assert_array_equal(batch["hr"], nearest_up(batch["lr"], 2))


def test_restart_at_step_k_equals_uninterrupted_run_and_seed_matters(tmp_path):
    root = make_div2k(tmp_path, range(1, 5))
    cfg = make_config(data_dir=root)
    full = input_pipeline.create_train_iterator(cfg, process_index=0, process_count=1)
    uninterrupted = [next(full) for _ in range(7)]
    resumed = input_pipeline.create_train_iterator(cfg, start_step=5, process_index=0, process_count=1)
    for k in (5, 6):
        b = next(resumed)
        np.testing.assert_array_equal(b["lr"], uninterrupted[k]["lr"])
        np.testing.assert_array_equal(b["hr"], uninterrupted[k]["hr"])
    cfg.seed = 1
    other = next(input_pipeline.create_train_iterator(cfg, process_index=0, process_count=1))
    assert not np.array_equal(other["lr"], uninterrupted[0]["lr"])


def test_two_processes_read_disjoint_images_and_yield_half_the_batch(tmp_path):
    root = make_div2k(tmp_path, range(1, 7), image_id_channel=True)
    cfg = make_config(data_dir=root, train_range=(1, 6))
    ids = []
    for p in range(2):
        pairs = data_sources.load_pairs(cfg.data, "train", (2,), 8, p, 2)
        it = input_pipeline.create_train_iterator(cfg, process_index=p, process_count=2)
        seen = set()
        for _ in range(4):
            b = next(it)
            assert b["lr"].shape == (4, 8, 8, 3) and b["hr"].shape == (4, 16, 16, 3)
            seen |= set(np.unique(b["hr"][..., 2]).tolist())
        ids.append({int(os.path.basename(n)[:4]) for n in pairs.names})
        assert seen <= ids[-1] and len(seen) == 3  # 4 steps x 4 patches / 2 per image = every image
    assert ids[0].isdisjoint(ids[1]) and ids[0] | ids[1] == set(range(1, 7))


def test_batch_not_divisible_by_process_count_says_numbers():
    cfg = make_config()
    cfg.batch_size = 9
    with pytest.raises(UserError, match=r"batch_size=9 .* process count 2"):
        input_pipeline.create_train_iterator(cfg, process_index=0, process_count=2)


def test_mdsr_one_scale_per_batch_same_on_every_process(tmp_path):
    root = make_div2k(tmp_path, range(1, 5), lr_hw=(12, 12), scales=(2, 3, 4))
    cfg = make_config(data_dir=root)
    cfg.scales, cfg.batch_size = (2, 3, 4), 4
    its = [input_pipeline.create_train_iterator(cfg, process_index=p, process_count=2) for p in range(2)]
    scales = []
    for _ in range(12):
        b0, b1 = next(its[0]), next(its[1])
        s = b0["scale"]
        assert b1["scale"] == s and b0["lr"].shape == (2, 8, 8, 3) and b0["hr"].shape == (2, 8 * s, 8 * s, 3)
        for lr, hr in zip(b0["lr"], b0["hr"], strict=True):
            np.testing.assert_array_equal(hr, nearest_up(lr, s))
        scales.append(s)
    assert set(scales) == {2, 3, 4}


# ---------------------------------------------------------------- sources


def div2k_from_set5(set5_dir, root, with_lr):
    """Set5 in DIV2K layout: HR as 0001..0005.png, the real MATLAB x2 LR images if ``with_lr``."""
    names = sorted(os.listdir(os.path.join(set5_dir, "HR")))
    for i, name in enumerate(names, 1):
        os.makedirs(root / "DIV2K_train_HR", exist_ok=True)
        shutil.copy(os.path.join(set5_dir, "HR", name), root / "DIV2K_train_HR" / f"{i:04d}.png")
        if with_lr:
            os.makedirs(root / "DIV2K_train_LR_bicubic" / "X2", exist_ok=True)
            lr_name = name.replace(".png", "x2.png")
            shutil.copy(
                os.path.join(set5_dir, "LR_bicubic", "X2", lr_name),
                root / "DIV2K_train_LR_bicubic" / "X2" / f"{i:04d}x2.png",
            )
    return str(root)


def test_set5_patches_downscale_to_their_matlab_lr_and_missing_lr_is_made(set5_dir, tmp_path):
    real = make_config(data_dir=div2k_from_set5(set5_dir, tmp_path / "real", True), train_range=(1, 5))
    real.patch_size = 24
    batch = next(input_pipeline.create_train_iterator(real, process_index=0, process_count=1))
    margin = 3  # LR pixels whose x2 bicubic taps reach outside the HR patch
    inner = lambda a: a[margin:-margin, margin:-margin]
    for lr, hr in zip(batch["lr"], batch["hr"], strict=True):
        # MATLAB resizes H first, rounding in between: a transposed patch matches the resize of
        # the transposed HR patch, so either order may be the one that was used.
        down = imresize(hr, 0.5, boundary="replicate")
        down_t = imresize(hr.transpose(1, 0, 2), 0.5, boundary="replicate").transpose(1, 0, 2)
        assert np.array_equal(inner(down), inner(lr)) or np.array_equal(inner(down_t), inner(lr))
    made_dir = div2k_from_set5(set5_dir, tmp_path / "made", False)
    made = make_config(data_dir=made_dir, train_range=(1, 5))
    made.patch_size = 24
    batch_made = next(input_pipeline.create_train_iterator(made, process_index=0, process_count=1))
    np.testing.assert_array_equal(batch_made["lr"], batch["lr"])  # MATLAB-exact resize, bit for bit
    np.testing.assert_array_equal(batch_made["hr"], batch["hr"])


def mock_div2k(calls, n=8):
    """``as_dataset_fn`` for tfds.testing.mock_data: paired DIV2K-like examples of every scale.

    Image i has LR (10 + i, 12) at x6; each scale's HR is the nearest-upsampled image, as in the
    real builder each configuration lists the images in its own order (reversed here for x3).
    Like TFDS with ``SkipDecoding``, it yields PNG bytes when decoders are passed.
    """
    import io

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
    cfg = make_config(source="tfds", tfds_name="div2k/bicubic_x2", train_range=(3, 6))
    with tfds.testing.mock_data(as_dataset_fn=mock_div2k(calls)):
        batch = next(input_pipeline.create_train_iterator(cfg, process_index=1, process_count=2))
        evals = input_pipeline.create_eval_samples(cfg)
    assert ("div2k", "bicubic_x2", "train[4:6]") in calls  # process 1 of 2 reads images 5..6
    assert ("div2k", "bicubic_x2", "validation[0:2]") in calls
    assert batch["lr"].shape == (4, 8, 8, 3)
    for lr, hr in zip(batch["lr"], batch["hr"], strict=True):
        np.testing.assert_array_equal(hr, nearest_up(lr, 2))
    assert [lr.shape for _, lr, _ in evals[2]] == [(30, 36, 3), (33, 36, 3)]


def test_tfds_mdsr_pairs_scales_by_hr_image_across_builder_orders():
    tfds = pytest.importorskip("tensorflow_datasets")
    calls = []
    cfg = make_config(source="tfds", tfds_name="div2k/bicubic_x2", train_range=(1, 3))
    cfg.scales = (2, 3)
    with tfds.testing.mock_data(as_dataset_fn=mock_div2k(calls)):
        pairs = data_sources.load_pairs(cfg.data, "train", (2, 3), 8)
    assert ("div2k", "bicubic_x3", "train") in calls
    for hr, lr2, lr3 in zip(pairs.hr, pairs.lr[2], pairs.lr[3], strict=True):
        np.testing.assert_array_equal(hr, nearest_up(lr2, 2))
        np.testing.assert_array_equal(hr, nearest_up(lr3, 3))


def test_small_image_error_names_the_file_and_skip_warns(tmp_path):
    root = make_div2k(tmp_path, range(1, 3))
    small = np.zeros((6, 20, 3), np.uint8)
    write_png(os.path.join(root, "DIV2K_train_HR", "0003.png"), nearest_up(small, 2))
    write_png(os.path.join(root, "DIV2K_train_LR_bicubic", "X2", "0003x2.png"), small)
    cfg = make_config(data_dir=root, train_range=(1, 3))
    with pytest.raises(UserError, match=r"0003\.png: x2 LR image is 20x6, smaller than the 8x8"):
        input_pipeline.create_train_iterator(cfg, process_index=0, process_count=1)
    cfg.data.skip_small = "skip"
    with pytest.warns(UserWarning, match=r"0003\.png.*skipped"):
        pairs = data_sources.load_pairs(cfg.data, "train", (2,), 8)
    assert len(pairs) == 2


def test_skimage_source_splits_and_eval_samples_are_aligned():
    assert set(data_sources.SKIMAGE_TRAIN).isdisjoint(data_sources.SKIMAGE_VAL)
    cfg = make_config(source="skimage")
    cfg.scales = (3,)
    evals = input_pipeline.create_eval_samples(cfg)
    assert [n for n, _, _ in evals[3]] == list(data_sources.SKIMAGE_VAL)
    for _, lr, hr in evals[3]:
        assert hr.shape == (lr.shape[0] * 3, lr.shape[1] * 3, 3) and lr.dtype == np.uint8
        np.testing.assert_array_equal(lr, imresize(hr, 1 / 3, boundary="replicate"))


def test_folder_source_and_cache_file_give_the_same_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.png"):
        write_png(str(tmp_path / "imgs" / name), rng.integers(0, 256, (30, 34, 3), dtype=np.uint8))
    cfg = make_config(source="folder", data_dir=str(tmp_path / "imgs"), train_range=(1, 3),
                      cache_dir=str(tmp_path / "cache"))  # fmt: skip
    first = next(input_pipeline.create_train_iterator(cfg, process_index=0, process_count=1))
    assert len(os.listdir(tmp_path / "cache")) == 1
    shutil.rmtree(tmp_path / "imgs")  # from now on only the cache file can supply the images
    pairs = data_sources.load_pairs(cfg.data, "train", (2,), 8)
    assert [os.path.basename(n) for n in pairs.names] == ["a.jpg", "b.png", "c.png"]
    again = next(input_pipeline.create_train_iterator(cfg, process_index=0, process_count=1))
    np.testing.assert_array_equal(first["hr"], again["hr"])
    np.testing.assert_array_equal(first["lr"], again["lr"])


# ---------------------------------------------------------------- device batches


def test_make_global_batch_and_prefetch_to_device():
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    n = len(jax.devices())
    batches = [
        {"lr": np.full((n, 2, 2, 3), k, np.uint8), "hr": np.full((n, 4, 4, 3), k, np.uint8), "scale": 2}
        for k in range(4)
    ]
    out = list(input_pipeline.prefetch_to_device(iter(batches), 2, mesh))
    assert [int(b["lr"][0, 0, 0, 0]) for b in out] == [0, 1, 2, 3]
    g = out[0]
    assert g["scale"] == 2 and g["hr"].shape == (n, 4, 4, 3)
    assert g["lr"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert len(g["lr"].addressable_shards) == n and g["lr"].addressable_shards[0].data.shape == (1, 2, 2, 3)
    with pytest.raises(UserError, match="global batch 3 .* is not divisible by the 8 devices"):
        sharding.make_global_batch({**batches[0], "lr": batches[0]["lr"][:3]}, mesh)
