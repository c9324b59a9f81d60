"""The decoded-image cache (edsr_jax.data.cache): written once, atomically, memory-mapped back, and
the same batches as decoding the files."""

import os
import shutil

import numpy as np
from support.configs import pipeline_config
from support.images import write_png

from edsr_jax.data import cache, pipeline, sources


def _pairs():
    rng = np.random.default_rng(0)
    hr = tuple(rng.integers(0, 256, (h, 12, 3), dtype=np.uint8) for h in (8, 10))
    lr = {2: tuple(a[::2, ::2].copy() for a in hr), 4: tuple(a[::4, ::4].copy() for a in hr)}
    return sources.ImagePairs(names=("a.png", "b.png"), hr=hr, lr=lr)


def test_save_then_load_gives_the_same_images_memory_mapped(tmp_path):
    pairs = _pairs()
    folder = cache.cache_folder(str(tmp_path), {"source": "folder", "ids": [1, 2]})
    assert not cache.exists(folder)
    cache.save_cache(pairs, folder)
    assert cache.exists(folder) and os.listdir(tmp_path) == [os.path.basename(folder)]  # no temporary left
    names, hr, lr = cache.load_cache(folder, (4,))
    assert names == pairs.names and set(lr) == {4}
    for got, want in zip(hr + lr[4], pairs.hr + pairs.lr[4], strict=True):
        assert isinstance(got, np.memmap) or isinstance(got.base, np.memmap)
        np.testing.assert_array_equal(got, want)


def test_a_finished_cache_is_kept_and_descriptions_name_different_folders(tmp_path):
    description = {"source": "folder", "ids": [1, 2]}
    folder = cache.cache_folder(str(tmp_path), description)
    assert folder == cache.cache_folder(str(tmp_path), dict(description))
    assert folder != cache.cache_folder(str(tmp_path), {**description, "ids": [1, 3]})
    cache.save_cache(_pairs(), folder)
    other = sources.ImagePairs(names=("z.png",), hr=(np.zeros((4, 4, 3), np.uint8),), lr={})
    cache.save_cache(other, folder)  # the first one finished stays
    assert cache.load_cache(folder, ())[0] == ("a.png", "b.png")


def test_folder_source_and_cache_file_give_the_same_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("b.png", "a.jpg", "c.png"):
        write_png(str(tmp_path / "imgs" / name), rng.integers(0, 256, (30, 34, 3), dtype=np.uint8))
    cfg = pipeline_config(source="folder", data_dir=str(tmp_path / "imgs"), train_range=(1, 3),
                          cache_dir=str(tmp_path / "cache"))  # fmt: skip
    first = next(pipeline.create_train_iterator(cfg, start_step=0, process_index=0, process_count=1))
    assert len(os.listdir(tmp_path / "cache")) == 1
    shutil.rmtree(tmp_path / "imgs")  # from now on only the cache file can supply the images
    pairs = sources.load_pairs(cfg.data, "train", (2,), 8)
    assert [os.path.basename(n) for n in pairs.names] == ["a.jpg", "b.png", "c.png"]
    again = next(pipeline.create_train_iterator(cfg, start_step=0, process_index=0, process_count=1))
    np.testing.assert_array_equal(first["hr"], again["hr"])
    np.testing.assert_array_equal(first["lr"], again["lr"])
