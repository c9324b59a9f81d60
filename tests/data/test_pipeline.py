"""Training batches (edsr_jax.data.pipeline): transforms alone and inside tf.data, alignment,
determinism and restarts, per-process shares, MDSR scales, the thread fallback without TensorFlow."""

import os
import sys

import numpy as np
import pytest
from support.configs import pipeline_config
from support.images import make_div2k, nearest_up, write_png

from edsr_jax.data import pipeline, sources
from edsr_jax.errors import UserError

# ---------------------------------------------------------------- transforms alone


def test_crop_pair_is_aligned_and_sized():
    rng = np.random.default_rng(1)
    lr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    hr = nearest_up(lr, 3)
    lp, hp = pipeline.crop_pair(lr, hr, 2, 5, 4, 3)
    assert lp.shape == (4, 4, 3) and hp.shape == (12, 12, 3)
    np.testing.assert_array_equal(lp, lr[2:6, 5:9])
    np.testing.assert_array_equal(hp, nearest_up(lp, 3))


@pytest.mark.parametrize("flags", [(1, 0, 0), (0, 1, 0), (0, 0, 1)])
def test_each_flip_alone_acts_identically_on_lr_and_hr(flags):
    rng = np.random.default_rng(2)
    lr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    hr = nearest_up(lr, 2)
    la, ha = pipeline.augment_pair(lr, hr, *map(bool, flags))
    expected = {(1, 0, 0): lr[:, ::-1], (0, 1, 0): lr[::-1], (0, 0, 1): lr.transpose(1, 0, 2)}[flags]
    np.testing.assert_array_equal(la, expected)
    np.testing.assert_array_equal(ha, nearest_up(expected, 2))


def test_the_three_flips_give_the_eight_dihedral_transforms():
    lr = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    outs = set()
    for f in range(8):
        la, ha = pipeline.augment_pair(lr, nearest_up(lr, 2), bool(f & 1), bool(f & 2), bool(f & 4))
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
        pipeline.write_augmented(out, view, *flags)
        np.testing.assert_array_equal(out, pipeline.augment_pair(view, view, *flags)[0])


def test_image_schedule_visits_every_image_patches_per_image_times_per_pass():
    n, ppi, b = 5, 3, 4
    seen = np.concatenate([pipeline.image_schedule(7, k, b, n, ppi) for k in range(n * ppi // b + 5)])
    first_pass = seen[: n * ppi]
    assert np.bincount(first_pass, minlength=n).tolist() == [ppi] * n
    # blocks of ppi consecutive patches come from one image
    assert all(len(set(first_pass[i : i + ppi])) == 1 for i in range(0, n * ppi, ppi))


def test_sample_batch_is_aligned_and_pure(tmp_path):
    root = make_div2k(tmp_path, range(1, 4))
    cfg = pipeline_config(data_dir=root, train_range=(1, 3))
    pairs = sources.load_pairs(cfg.data, "train", (2,), 8)
    kw = dict(seed=3, step=11, batch=6, patch=8, scale=2, patches_per_image=2)
    lr, hr = pipeline.sample_batch(pairs, **kw)
    assert lr.dtype == hr.dtype == np.uint8 and lr.shape == (6, 8, 8, 3) and hr.shape == (6, 16, 16, 3)
    for a, b in zip(lr, hr, strict=True):
        np.testing.assert_array_equal(b, nearest_up(a, 2))
    lr2, hr2 = pipeline.sample_batch(pairs, **kw)
    np.testing.assert_array_equal(lr, lr2)
    np.testing.assert_array_equal(hr, hr2)
    lr3, _ = pipeline.sample_batch(pairs, **{**kw, "step": 12})
    assert not np.array_equal(lr, lr3)


def test_flat_patch_threshold_redraws_flat_patches(tmp_path):
    # Left half of the LR image is flat grey, right half noise.
    lr = np.full((16, 32, 3), 128, np.uint8)
    lr[:, 16:] = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_png(str(tmp_path / "DIV2K_train_HR" / "0001.png"), nearest_up(lr, 2))
    write_png(str(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png"), lr)
    cfg = pipeline_config(data_dir=str(tmp_path), train_range=(1, 1))
    pairs = sources.load_pairs(cfg.data, "train", (2,), 4)
    kw = dict(seed=0, batch=64, patch=4, scale=2, patches_per_image=64)
    plain, _ = pipeline.sample_batch(pairs, step=0, **kw)
    kept, _ = pipeline.sample_batch(pairs, step=0, flat_patch_threshold=1.0, **kw)
    std = lambda x: x.reshape(len(x), -1).std(axis=1)  # noqa: E731
    assert (std(plain) < 1).sum() > 10  # a quarter of positions are flat without the filter
    assert (std(kept) < 1).sum() == 0


# ---------------------------------------------------------------- inside tf.data


def test_train_iterator_matches_sampler_and_is_aligned(tmp_path):
    root = make_div2k(tmp_path, range(1, 5))
    cfg = pipeline_config(data_dir=root)
    it = pipeline.create_train_iterator(cfg, start_step=0, process_index=0, process_count=1)
    pairs = sources.load_pairs(cfg.data, "train", (2,), 8)
    for step in range(3):
        batch = next(it)
        assert set(batch) == {"lr", "hr", "scale"} and batch["scale"] == 2 and type(batch["scale"]) is int
        assert batch["lr"].dtype == np.uint8 and batch["lr"].shape == (8, 8, 8, 3)
        lr, hr = pipeline.sample_batch(
            pairs, seed=0, step=step, batch=8, patch=8, scale=2, patches_per_image=2
        )
        np.testing.assert_array_equal(batch["lr"], lr)
        np.testing.assert_array_equal(batch["hr"], hr)
        np.testing.assert_array_equal(batch["hr"], nearest_up(batch["lr"], 2))


def test_restart_at_step_k_equals_uninterrupted_run_and_seed_matters(tmp_path):
    root = make_div2k(tmp_path, range(1, 5))
    cfg = pipeline_config(data_dir=root)
    full = pipeline.create_train_iterator(cfg, start_step=0)
    uninterrupted = [next(full) for _ in range(7)]
    resumed = pipeline.create_train_iterator(cfg, start_step=5, process_index=0, process_count=1)
    for k in (5, 6):
        b = next(resumed)
        np.testing.assert_array_equal(b["lr"], uninterrupted[k]["lr"])
        np.testing.assert_array_equal(b["hr"], uninterrupted[k]["hr"])
    cfg.seed = 1
    other = next(pipeline.create_train_iterator(cfg, start_step=0, process_index=0, process_count=1))
    assert not np.array_equal(other["lr"], uninterrupted[0]["lr"])


def test_two_processes_read_disjoint_images_and_yield_half_the_batch(tmp_path):
    root = make_div2k(tmp_path, range(1, 7), image_id_channel=True)
    cfg = pipeline_config(data_dir=root, train_range=(1, 6))
    ids = []
    for p in range(2):
        pairs = sources.load_pairs(cfg.data, "train", (2,), 8, p, 2)
        it = pipeline.create_train_iterator(cfg, start_step=0, process_index=p, process_count=2)
        seen = set()
        for _ in range(4):
            b = next(it)
            assert b["lr"].shape == (4, 8, 8, 3) and b["hr"].shape == (4, 16, 16, 3)
            seen |= set(np.unique(b["hr"][..., 2]).tolist())
        ids.append({int(os.path.basename(n)[:4]) for n in pairs.names})
        assert seen <= ids[-1] and len(seen) == 3  # 4 steps x 4 patches / 2 per image = every image
    assert ids[0].isdisjoint(ids[1]) and ids[0] | ids[1] == set(range(1, 7))


def test_batch_not_divisible_by_process_count_says_numbers():
    cfg = pipeline_config()
    cfg.batch_size = 9
    with pytest.raises(UserError, match=r"config\.batch_size=9 .* process count 2"):
        pipeline.create_train_iterator(cfg, start_step=0, process_index=0, process_count=2)


def test_mdsr_one_scale_per_batch_same_on_every_process(tmp_path):
    root = make_div2k(tmp_path, range(1, 5), lr_hw=(12, 12), scales=(2, 3, 4))
    cfg = pipeline_config(data_dir=root)
    cfg.scales, cfg.batch_size = (2, 3, 4), 4
    its = [
        pipeline.create_train_iterator(cfg, start_step=0, process_index=p, process_count=2) for p in range(2)
    ]
    scales = []
    for _ in range(12):
        b0, b1 = next(its[0]), next(its[1])
        s = b0["scale"]
        assert b1["scale"] == s and b0["lr"].shape == (2, 8, 8, 3) and b0["hr"].shape == (2, 8 * s, 8 * s, 3)
        for lr, hr in zip(b0["lr"], b0["hr"], strict=True):
            np.testing.assert_array_equal(hr, nearest_up(lr, s))
        scales.append(s)
    assert set(scales) == {2, 3, 4}


# ---------------------------------------------------------------- without TensorFlow


def test_batches_fall_back_to_threads_without_tensorflow(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` raises ImportError
    monkeypatch.setattr(pipeline, "_WARNED_NO_TF", [])
    calls = []

    def sample_step(step):
        calls.append(int(step))
        return np.full((1, 2, 2, 3), step, np.uint8), np.zeros((1, 4, 4, 3), np.uint8), np.int64(2)

    batches = pipeline.thread_batches(sample_step, 5, prefetch=1, num_threads=2)
    assert [int(next(batches)[0][0, 0, 0, 0]) for _ in range(4)] == [5, 6, 7, 8]  # in order, from 5
    assert max(calls) <= 8 + 3  # samples ahead by at most prefetch + threads

    with pytest.raises(ImportError):
        pipeline.make_dataset(sample_step, 0, 1)


def test_train_iterator_without_tensorflow_warns_once_and_gives_the_same_batches(tmp_path, monkeypatch):
    root = make_div2k(tmp_path, range(1, 5))
    cfg = pipeline_config(data_dir=root)
    with_tf = pipeline.create_train_iterator(cfg, start_step=2)
    expected = [next(with_tf) for _ in range(2)]
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setattr(pipeline, "_WARNED_NO_TF", [])
    with pytest.warns(UserWarning, match="input pipeline without tf.data"):
        without = pipeline.create_train_iterator(cfg, start_step=2)
    for want in expected:
        got = next(without)
        assert got["scale"] == want["scale"] == 2
        np.testing.assert_array_equal(got["lr"], want["lr"])
        np.testing.assert_array_equal(got["hr"], want["hr"])
