"""Training batches (edsr_jax.data.pipeline): the transforms alone, the global sampler (independent
images per batch, the same global batch for any split into rows), inside Grain (threads and worker
processes), restarts, MDSR scales, lazy decoding."""

import numpy as np
import pytest
from support.configs import pipeline_config
from support.images import make_div2k, nearest_up, write_png

from edsr_jax.data import cache, pipeline, sources
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


@pytest.mark.parametrize("n, batch", [(800, 16), (37, 8), (16, 16), (9, 4)])
def test_every_batch_holds_batch_size_different_images_and_a_pass_shows_each_once(n, batch):
    per_pass = n // batch
    steps = [pipeline.image_schedule(5, k, batch, n) for k in range(3 * per_pass)]
    for images in steps:
        assert len(set(images.tolist())) == batch  # never two crops of one image in a batch
    for e in range(3):
        seen = np.concatenate(steps[e * per_pass : (e + 1) * per_pass])
        counts = np.bincount(seen, minlength=n)
        assert counts.max() == 1 and counts.sum() == per_pass * batch  # n % batch wait for the next pass
    first, second = (np.concatenate(steps[e * per_pass : (e + 1) * per_pass]) for e in range(2))
    assert not np.array_equal(first, second)  # a fresh permutation per pass


def test_with_fewer_images_than_the_batch_every_image_appears_equally_often():
    n, batch = 5, 8
    rows = np.concatenate([pipeline.image_schedule(0, k, batch, n) for k in range(5)])  # 40 rows = 8 passes
    assert np.bincount(rows, minlength=n).tolist() == [8] * n
    assert all(sorted(rows[i : i + n].tolist()) == list(range(n)) for i in range(0, 40, n))


def test_the_old_single_image_batches_are_gone(tmp_path):
    # (edsr-jax 0.1 drew all 16 crops of a default batch from one image)
    root = make_div2k(tmp_path, range(1, 21), image_id_channel=True)
    cfg = pipeline_config(data_dir=root, train_range=(1, 20))
    cfg.batch_size = 16
    for batch in (next(it) for it in [pipeline.create_train_iterator(cfg)] for _ in range(3)):
        ids = [int(np.unique(hr[..., 2])[0]) for hr in batch["high_res"]]
        assert len(set(ids)) == 16


def _pairs(root, numbers, scales=(2,)):
    return cache.PairCache(sources.div2k_folder_source(root, numbers, scales, "bicubic"))


def test_sample_rows_is_aligned_and_pure(tmp_path):
    pairs = _pairs(make_div2k(tmp_path, range(1, 4)), range(1, 4))
    kw = dict(seed=3, step=11, batch=6, rows=(0, 6), patch=8, scale=2)
    lr, hr = pipeline.sample_rows(pairs, **kw)
    assert lr.dtype == hr.dtype == np.uint8 and lr.shape == (6, 8, 8, 3) and hr.shape == (6, 16, 16, 3)
    for a, b in zip(lr, hr, strict=True):
        np.testing.assert_array_equal(b, nearest_up(a, 2))
    lr2, hr2 = pipeline.sample_rows(pairs, **kw)
    np.testing.assert_array_equal(lr, lr2)
    np.testing.assert_array_equal(hr, hr2)
    lr3, _ = pipeline.sample_rows(pairs, **{**kw, "step": 12})
    assert not np.array_equal(lr, lr3)


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_the_global_batch_is_the_same_for_any_number_of_processes(tmp_path, processes):
    pairs = _pairs(make_div2k(tmp_path, range(1, 13)), range(1, 13))
    kw = dict(seed=1, batch=8, patch=8, scale=2, flat_patch_threshold=10.0)
    for step in range(5):
        whole_lr, whole_hr = pipeline.sample_rows(pairs, step=step, rows=(0, 8), **kw)
        share = 8 // processes
        parts = [
            pipeline.sample_rows(pairs, step=step, rows=(i * share, (i + 1) * share), **kw)
            for i in range(processes)
        ]
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole_lr)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole_hr)


def test_flat_patch_threshold_redraws_flat_patches(tmp_path):
    # Left half of the LR image is flat grey, right half noise.
    lr = np.full((16, 32, 3), 128, np.uint8)
    lr[:, 16:] = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_png(str(tmp_path / "DIV2K_train_HR" / "0001.png"), nearest_up(lr, 2))
    write_png(str(tmp_path / "DIV2K_train_LR_bicubic" / "X2" / "0001x2.png"), lr)
    pairs = _pairs(str(tmp_path), [1])
    kw = dict(seed=0, step=0, batch=64, rows=(0, 64), patch=4, scale=2)
    plain, _ = pipeline.sample_rows(pairs, **kw)
    kept, _ = pipeline.sample_rows(pairs, flat_patch_threshold=1.0, **kw)
    std = lambda x: x.reshape(len(x), -1).std(axis=1)  # noqa: E731
    assert (std(plain) < 1).sum() > 10  # a quarter of positions are flat without the filter
    assert (std(kept) < 1).sum() == 0


def test_only_the_images_a_batch_needs_are_decoded_once(tmp_path, monkeypatch):
    source = sources.div2k_folder_source(make_div2k(tmp_path, range(1, 9)), range(1, 9), (2,), "bicubic")
    reads = []
    read_hr = source.read_hr
    monkeypatch.setattr(source, "read_hr", lambda i: reads.append(i) or read_hr(i))
    pairs = cache.PairCache(source)
    pipeline.sample_rows(pairs, seed=0, step=0, batch=4, rows=(0, 2), patch=8, scale=2)
    assert len(reads) == 2  # this process's two rows: two images, not all eight
    pipeline.sample_rows(pairs, seed=0, step=0, batch=4, rows=(0, 2), patch=8, scale=2)
    assert len(reads) == 2  # kept


# ---------------------------------------------------------------- inside Grain


def test_train_iterator_matches_the_sampler_and_is_aligned(tmp_path):
    root = make_div2k(tmp_path, range(1, 5))
    cfg = pipeline_config(data_dir=root)
    it = pipeline.create_train_iterator(cfg, start_step=0)
    pairs = _pairs(root, range(1, 5))
    for step in range(3):
        batch = next(it)
        assert (
            set(batch) == {"low_res", "high_res", "scale"}
            and batch["scale"] == 2
            and type(batch["scale"]) is int
        )
        assert batch["low_res"].dtype == np.uint8 and batch["low_res"].shape == (8, 8, 8, 3)
        lr, hr = pipeline.sample_rows(pairs, seed=0, step=step, batch=8, rows=(0, 8), patch=8, scale=2)
        np.testing.assert_array_equal(batch["low_res"], lr)
        np.testing.assert_array_equal(batch["high_res"], hr)
        np.testing.assert_array_equal(batch["high_res"], nearest_up(batch["low_res"], 2))


def test_restart_at_step_k_equals_uninterrupted_run_and_seed_matters(tmp_path):
    root = make_div2k(tmp_path, range(1, 5))
    cfg = pipeline_config(data_dir=root)
    full = pipeline.create_train_iterator(cfg, start_step=0)
    uninterrupted = [next(full) for _ in range(7)]
    resumed = pipeline.create_train_iterator(cfg, start_step=5)
    for k in (5, 6):
        b = next(resumed)
        np.testing.assert_array_equal(b["low_res"], uninterrupted[k]["low_res"])
        np.testing.assert_array_equal(b["high_res"], uninterrupted[k]["high_res"])
    cfg.seed = 1
    other = next(pipeline.create_train_iterator(cfg, start_step=0))
    assert not np.array_equal(other["low_res"], uninterrupted[0]["low_res"])


def test_a_process_yields_its_rows_of_the_global_batch(tmp_path):
    root = make_div2k(tmp_path, range(1, 7))
    cfg = pipeline_config(data_dir=root, train_range=(1, 6))
    whole = next(pipeline.create_train_iterator(cfg))
    halves = [next(pipeline.create_train_iterator(cfg, rows=rows)) for rows in ((0, 4), (4, 8))]
    for key in ("low_res", "high_res"):
        np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])
    for rows in ((0, 0), (4, 9), (-1, 2)):
        with pytest.raises(UserError, match=r"rows must be .*config\.batch_size=8"):
            pipeline.create_train_iterator(cfg, rows=rows)


def test_mdsr_one_scale_per_batch_whoever_builds_the_rows(tmp_path):
    root = make_div2k(tmp_path, range(1, 5), lr_hw=(12, 12), scales=(2, 3, 4))
    cfg = pipeline_config(data_dir=root)
    cfg.scales, cfg.batch_size = (2, 3, 4), 4
    its = [pipeline.create_train_iterator(cfg, rows=rows) for rows in ((0, 2), (2, 4))]
    scales = []
    for _ in range(12):
        b0, b1 = next(its[0]), next(its[1])
        s = b0["scale"]
        assert (
            b1["scale"] == s
            and b0["low_res"].shape == (2, 8, 8, 3)
            and b0["high_res"].shape == (2, 8 * s, 8 * s, 3)
        )
        for lr, hr in zip(b0["low_res"], b0["high_res"], strict=True):
            np.testing.assert_array_equal(hr, nearest_up(lr, s))
        scales.append(s)
    assert set(scales) == {2, 3, 4}


def test_worker_processes_need_the_disk_cache_and_give_the_same_batches(tmp_path):
    root = make_div2k(tmp_path, range(1, 5))
    cfg = pipeline_config(data_dir=root, workers=2)
    with pytest.raises(UserError, match=r"config\.data\.workers=2 needs config\.data\.cache_dir"):
        pipeline.create_train_iterator(cfg)
    cfg.data.cache_dir = str(tmp_path / "cache")
    with_workers = pipeline.create_train_iterator(cfg, start_step=3)
    got = [next(with_workers) for _ in range(3)]
    cfg.data.workers = 0
    threads = pipeline.create_train_iterator(cfg, start_step=3)
    for want in (next(threads) for _ in range(3)):
        have = got.pop(0)
        assert have["scale"] == want["scale"]
        np.testing.assert_array_equal(have["low_res"], want["low_res"])
        np.testing.assert_array_equal(have["high_res"], want["high_res"])
