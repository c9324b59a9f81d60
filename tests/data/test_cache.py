"""Decoded images (edsr_jax.data.cache): decoded once on first use, in memory or as memory-mapped
files written atomically, shared by threads, invalidated when a file changes."""

import os
import threading
import time

import numpy as np
import pytest
from support.configs import pipeline_config
from support.images import make_div2k, nearest_up, write_png

from edsr_jax.data import cache, pipeline, sources
from edsr_jax.errors import UserError


def _source(root, numbers=range(1, 4), scales=(2,)):
    return sources.div2k_folder_source(root, numbers, scales, "bicubic")


def test_images_are_decoded_once_and_read_only(tmp_path):
    source = _source(make_div2k(tmp_path, range(1, 4)))
    pairs = cache.PairCache(source)
    hr, lr = pairs.pair(1, 2)
    np.testing.assert_array_equal(hr, nearest_up(lr, 2))
    assert pairs.pair(1, 2)[0] is hr  # kept, not decoded again
    assert not hr.flags.writeable and not lr.flags.writeable
    assert pairs.nbytes == hr.nbytes + lr.nbytes


def test_the_disk_cache_is_memory_mapped_and_a_second_run_decodes_nothing(tmp_path, monkeypatch):
    root = make_div2k(tmp_path, range(1, 4))
    first = cache.PairCache(_source(root), str(tmp_path / "cache"))
    want = first.pair(2, 2)
    (folder,) = os.listdir(tmp_path / "cache")
    assert sorted(os.listdir(tmp_path / "cache" / folder)) == ["hr", "lr_x2"]
    assert os.listdir(tmp_path / "cache" / folder / "hr") == ["2.npy"]  # no temporary left
    second_source = _source(root)
    monkeypatch.setattr(second_source, "read_hr", lambda i: pytest.fail("decoded again"))
    monkeypatch.setattr(second_source, "read_lr", lambda i, s: pytest.fail("decoded again"))
    got = cache.PairCache(second_source, str(tmp_path / "cache")).pair(2, 2)
    for a, b in zip(got, want, strict=True):
        assert isinstance(a, np.memmap)
        np.testing.assert_array_equal(a, b)


def test_a_changed_file_gets_a_new_cache(tmp_path):
    root = make_div2k(tmp_path, range(1, 3))
    folder = cache.PairCache(_source(root, range(1, 3)), str(tmp_path / "c")).folder
    time.sleep(0.01)
    lr = np.full((20, 28, 3), 7, np.uint8)
    write_png(os.path.join(root, "DIV2K_train_HR", "0001.png"), nearest_up(lr, 2))
    changed = cache.PairCache(_source(root, range(1, 3)), str(tmp_path / "c"))
    assert changed.folder != folder
    assert int(changed.pair(0, 2)[0].max()) == 7


def test_threads_asking_for_one_image_decode_it_once(tmp_path, monkeypatch):
    source = _source(make_div2k(tmp_path, range(1, 2)), range(1, 2))
    calls = []
    read_hr = source.read_hr

    def slow(i):
        calls.append(i)
        time.sleep(0.2)
        return read_hr(i)

    monkeypatch.setattr(source, "read_hr", slow)
    pairs = cache.PairCache(source)
    results = []
    threads = [threading.Thread(target=lambda: results.append(pairs.pair(0, 2)[0])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [0] and all(r is results[0] for r in results)


def test_an_lr_image_too_large_for_its_hr_is_named(tmp_path):
    root = make_div2k(tmp_path, range(1, 2), lr_hw=(10, 10))
    write_png(
        os.path.join(root, "DIV2K_train_LR_bicubic", "X2", "0001x2.png"), np.zeros((11, 10, 3), np.uint8)
    )
    with pytest.raises(
        UserError,
        match=r"0001\.png: LR image \S*0001x2\.png \(10x11\) times scale 2 is larger than its HR image 20x20",
    ):
        cache.PairCache(_source(root, range(1, 2))).pair(0, 2)


def test_folder_source_and_disk_cache_give_the_same_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.png"):
        write_png(str(tmp_path / "imgs" / name), rng.integers(0, 256, (30, 34, 3), dtype=np.uint8))
    cfg = pipeline_config(source="folder", data_dir=str(tmp_path / "imgs"), train_range=(1, 3))
    plain = next(pipeline.create_train_iterator(cfg, start_step=0))
    cfg.data.cache_dir = str(tmp_path / "cache")
    first = next(pipeline.create_train_iterator(cfg, start_step=0))
    again = next(pipeline.create_train_iterator(cfg, start_step=0))
    for key in ("low_res", "high_res"):
        np.testing.assert_array_equal(first[key], plain[key])
        np.testing.assert_array_equal(again[key], plain[key])


def test_cached_arrays_open_like_np_load_without_ast(tmp_path, monkeypatch):
    # np.load parses .npy headers with ast.literal_eval, which CPython 3.11 breaks under threads
    # ("AST constructor recursion depth mismatch", seen in the SIGKILL fault test): the cache
    # reads its own headers.
    import ast

    rng = np.random.default_rng(0)
    arrays = [
        rng.integers(0, 256, (20, 28, 3), dtype=np.uint8),
        rng.integers(0, 256, (1, 5, 3), dtype=np.uint8),
        rng.normal(size=(7, 4)).astype(np.float32),
    ]
    paths = []
    for n, a in enumerate(arrays):
        paths.append(str(tmp_path / f"{n}.npy"))
        cache._save_npy(paths[-1], a)
    expected = [np.load(p, mmap_mode="r") for p in paths]
    monkeypatch.setattr(ast, "literal_eval", lambda *_: pytest.fail("the cache parsed a header with ast"))
    for path, want in zip(paths, expected, strict=True):
        got = cache._open_npy(path)
        assert got.dtype == want.dtype and got.shape == want.shape and not got.flags.writeable
        np.testing.assert_array_equal(got, want)
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match="is not a .npy file"):
        cache._open_npy(str(tmp_path / "bad.npy"))
