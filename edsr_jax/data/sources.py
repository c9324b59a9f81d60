"""Image sources for training and evaluation: decode every LR/HR pair once into a cache.

Every source ends as an :class:`ImagePairs`: the HR images and, per scale, the LR images, as uint8
RGB arrays in [0, 255], decoded once (PNG decoding per patch costs ~80 ms per DIV2K pair, see
``experiments/perf/RESULTS.md``). The cache lives in memory, or in flat ``.npy`` files under
``config.data.cache_dir`` that later runs (and other processes on the same host) memory-map
(:mod:`edsr_jax.data.cache`).

Sources (``config.data.source``):

* ``"tfds"``: TensorFlow Datasets ``div2k/{degradation}_x{s}`` (one builder per scale); image
  numbers are positions in the ``train`` split (1..800) and the ``validation`` split (801..900)
  in TFDS's fixed (hashed) order, so a partial range is not the same files as in the folder
  sources (the full splits are the same images).
* ``"div2k_folder"``: the official DIV2K layout under ``data_dir``
  (``DIV2K_train_HR/0001.png``, ``DIV2K_train_LR_bicubic/X2/0001x2.png``, ``DIV2K_valid_*`` for
  801..900, ``_LR_unknown`` for ``degradation="unknown"``); missing bicubic LR images are made
  with the MATLAB-exact resize.
* ``"folder"``: any folder of HR images (sorted by file name, numbered from 1); LR made with the
  MATLAB-exact resize.
* ``"skimage"``: the photographs bundled with scikit-image (no download), split by the fixed name
  lists :data:`SKIMAGE_TRAIN` and :data:`SKIMAGE_VAL`.

TensorFlow and TFDS are imported only by the TFDS source.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re
import warnings
from collections.abc import Callable, Sequence

import numpy as np

from edsr_jax.data import cache
from edsr_jax.errors import UserError
from edsr_jax.imaging import files, resize

SOURCES = ("tfds", "div2k_folder", "folder", "skimage")
DEGRADATIONS = ("bicubic", "unknown")
# DIV2K numbering: images 1..800 are the train split, 801..900 the validation split.
DIV2K_NUM_TRAIN = 800
DIV2K_NUM_TOTAL = 900
# scikit-image sample photographs (file names in skimage's data folder, no download). Grayscale
# ones are replicated to RGB. The validation photos are never trained on.
SKIMAGE_FILES = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "motorcycle_right": "motorcycle_right.png",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "ihc": "ihc.png",
    "camera": "camera.png",
    "moon": "moon.png",
    "coins": "coins.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "brick": "brick.png",
}
SKIMAGE_TRAIN: tuple[str, ...] = (
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "retina",
    "ihc",
    "camera",
    "moon",
    "coins",
    "grass",
    "gravel",
    "brick",
)
SKIMAGE_VAL: tuple[str, ...] = ("astronaut", "chelsea", "coffee")
# Threads that decode images (PIL and the resize release the GIL for most of their work).
MAX_DECODE_THREADS = 8


@dataclasses.dataclass(frozen=True)
class ImagePairs:
    """Decoded images of one shard: ``hr[i]`` with ``lr[s][i]`` for every scale ``s``.

    Attributes:
        names: one name per image (file name, DIV2K number or photo name), for messages.
        hr: HR images, uint8 (H, W, 3); ``lr[s][i].shape[:2] * s <= hr[i].shape[:2]`` and LR pixel
            (y, x) covers HR pixels (y*s .. y*s+s-1, x*s .. x*s+s-1) (top-left aligned).
        lr: scale -> LR images, uint8 (h, w, 3).
    """

    names: tuple[str, ...]
    hr: tuple[np.ndarray, ...]
    lr: dict[int, tuple[np.ndarray, ...]]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded images take."""
        return sum(a.nbytes for a in self.hr) + sum(a.nbytes for v in self.lr.values() for a in v)


def shard_numbers(numbers: Sequence, process_index: int, process_count: int) -> list:
    """The contiguous chunk of ``numbers`` that process ``process_index`` of ``process_count`` reads.

    Raises:
        UserError: fewer images than processes, or a bad process index.
    """
    if not 0 <= process_index < process_count:
        raise UserError(f"process_index must be in [0, {process_count}), got {process_index}")
    if len(numbers) < process_count:
        raise UserError(
            f"{len(numbers)} images cannot be shared by {process_count} processes (each needs one)"
        )
    bounds = np.linspace(0, len(numbers), process_count + 1).round().astype(int)
    return list(numbers[bounds[process_index] : bounds[process_index + 1]])


def image_numbers(image_range: Sequence[int]) -> list[int]:
    """1-based image numbers ``first..last`` (inclusive) of a ``(first, last)`` range."""
    first, last = (int(v) for v in image_range)
    if not 1 <= first <= last:
        raise UserError(f"an image range must be (first, last) with 1 <= first <= last, got {image_range}")
    return list(range(first, last + 1))


def make_lr(hr: np.ndarray, scale: int, name: str = "image") -> np.ndarray:
    """The MATLAB-exact bicubic LR image of ``hr`` (cropped to a multiple of ``scale``)."""
    return resize.downscale(hr, scale, boundary="replicate", name=name)


def check_pair(name: str, hr: np.ndarray, lr: np.ndarray, scale: int) -> None:
    """Raises a UserError naming ``name`` when an LR image is larger than its HR image / ``scale``."""
    for a, what in ((hr, "HR"), (lr, "LR")):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
            raise UserError(f"{name}: {what} image must be uint8 (H, W, 3), got {a.dtype} {a.shape}")
    if lr.shape[0] * scale > hr.shape[0] or lr.shape[1] * scale > hr.shape[1]:
        raise UserError(
            f"{name}: LR image {lr.shape[1]}x{lr.shape[0]} times scale {scale} is larger than "
            f"its HR image {hr.shape[1]}x{hr.shape[0]}"
        )


# ----------------------------------------------------------------------------------------------
# One loader per source: (numbers or names) -> list of (name, load_fn) where load_fn() returns
# (hr, {scale: lr}). Loading runs on a thread pool.
# ----------------------------------------------------------------------------------------------

Loader = Callable[[], tuple[np.ndarray, dict[int, np.ndarray]]]


def _hr_then_lr(read_hr: Callable[[], np.ndarray], lr_paths: dict[int, str | None]) -> Loader:
    """A loader reading the HR image and each LR file, resizing where the LR path is None."""

    def load():
        hr = read_hr()
        return hr, {s: files.read_image(p) if p else make_lr(hr, s) for s, p in lr_paths.items()}

    return load


def div2k_folder_loaders(
    data_dir: str, numbers: Sequence[int], scales: Sequence[int], degradation: str
) -> list[tuple[str, Loader]]:
    """Loaders for DIV2K image numbers in the official folder layout under ``data_dir``.

    Raises:
        UserError: a missing HR file, or a missing LR file for ``degradation="unknown"``.
    """
    out = []
    for n in numbers:
        if not 1 <= n <= DIV2K_NUM_TOTAL:
            raise UserError(f"DIV2K image numbers are 1..{DIV2K_NUM_TOTAL}, got {n}")
        part = "train" if n <= DIV2K_NUM_TRAIN else "valid"
        hr_path = os.path.join(data_dir, f"DIV2K_{part}_HR", f"{n:04d}.png")
        if not os.path.isfile(hr_path):
            raise UserError(f"DIV2K HR image not found: {hr_path} (data_dir={data_dir})")
        lr_paths = {}
        for s in scales:
            p = os.path.join(data_dir, f"DIV2K_{part}_LR_{degradation}", f"X{s}", f"{n:04d}x{s}.png")
            if not os.path.isfile(p):
                if degradation != "bicubic":
                    raise UserError(f"DIV2K LR image not found: {p} (only bicubic LR can be made)")
                p = None
            lr_paths[s] = p
        out.append((hr_path, _hr_then_lr(lambda path=hr_path: files.read_image(path), lr_paths)))
    return out


def folder_loaders(data_dir: str, numbers: Sequence[int], scales: Sequence[int]) -> list[tuple[str, Loader]]:
    """Loaders for images ``numbers`` (1-based, sorted by name) of a folder of HR images."""
    found = files.list_images(data_dir)
    if max(numbers) > len(found):
        raise UserError(f"image range goes up to {max(numbers)} but {data_dir} holds {len(found)} images")
    paths = [found[n - 1] for n in numbers]
    return [(p, _hr_then_lr(lambda p=p: files.read_image(p), dict.fromkeys(scales))) for p in paths]


def skimage_loaders(names: Sequence[str], scales: Sequence[int]) -> list[tuple[str, Loader]]:
    """Loaders for scikit-image sample photographs by name (keys of :data:`SKIMAGE_FILES`)."""
    import skimage.data

    root = os.path.dirname(skimage.data.__file__)
    out = []
    for name in names:
        if name not in SKIMAGE_FILES:
            raise UserError(f"unknown scikit-image photograph {name!r}; known: {sorted(SKIMAGE_FILES)}")
        path = os.path.join(root, SKIMAGE_FILES[name])
        out.append((name, _hr_then_lr(lambda path=path: files.read_image(path), dict.fromkeys(scales))))
    return out


def tfds_name_for_scale(tfds_name: str, degradation: str, scale: int) -> str:
    """``div2k/bicubic_x2`` style name for ``scale`` (the ``_x{n}`` suffix of ``tfds_name`` replaced)."""
    name = tfds_name or f"div2k/{degradation}_x{scale}"
    if not re.search(r"_x\d+$", name):
        raise UserError(f"tfds_name must end in _x<scale> (e.g. div2k/bicubic_x2), got {name!r}")
    return re.sub(r"_x\d+$", f"_x{scale}", name)


def _tfds_split(numbers: Sequence[int]) -> str:
    """TFDS split slice holding the contiguous DIV2K numbers (train 1..800, validation 801..900)."""
    first, last = min(numbers), max(numbers)
    if last - first + 1 != len(numbers):
        raise UserError(f"TFDS images must be a contiguous range, got {len(numbers)} in {first}..{last}")
    if last <= DIV2K_NUM_TRAIN:
        return f"train[{first - 1}:{last}]"
    if first > DIV2K_NUM_TRAIN and last <= DIV2K_NUM_TOTAL:
        return f"validation[{first - 1 - DIV2K_NUM_TRAIN}:{last - DIV2K_NUM_TRAIN}]"
    raise UserError(
        f"a TFDS image range must lie in 1..800 (train) or 801..900 (validation), got {first}..{last}"
    )


def _tfds_encoded(name: str, data_dir: str | None, split: str) -> list[tuple[bytes, bytes]]:
    """(HR, LR) encoded PNG bytes of a TFDS split, in TFDS order (decoded later, once, on threads).

    Raises:
        UserError: the dataset is not prepared in ``data_dir``.
    """
    import tensorflow_datasets as tfds

    skip = {"hr": tfds.decode.SkipDecoding(), "lr": tfds.decode.SkipDecoding()}
    try:
        ds = tfds.builder(name, data_dir=data_dir).as_dataset(split=split, shuffle_files=False, decoders=skip)
        return [(ex["hr"], ex["lr"]) for ex in ds.as_numpy_iterator()]
    except (AssertionError, OSError, ValueError) as e:
        raise UserError(
            f"TFDS dataset {name} is not available in data_dir={data_dir}: {e}. Prepare it once with "
            f"tfds.builder({name!r}, data_dir=...).download_and_prepare(download_config="
            "tfds.download.DownloadConfig(manual_dir=<folder with the official DIV2K zips>))"
        ) from e


def _decode_png(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 RGB (H, W, 3)."""
    import tensorflow as tf

    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def tfds_loaders(
    tfds_name: str, data_dir: str | None, numbers: Sequence[int], scales: Sequence[int], degradation: str
) -> list[tuple[str, Loader]]:
    """Loaders for DIV2K pairs from TFDS, one builder per scale.

    TFDS stores each configuration in its own hashed order, so "image n" is position n of the
    first scale's split; the other scales' LR images are found by the bytes of their HR image.

    Raises:
        UserError: the dataset is not prepared, or another scale lacks one of the HR images.
    """
    split = _tfds_split(numbers)
    names = [tfds_name_for_scale(tfds_name, degradation, s) for s in scales]
    first = _tfds_encoded(names[0], data_dir, split)
    keys = [hashlib.sha1(hr).hexdigest() for hr, _ in first]
    lr_bytes = {scales[0]: [lr for _, lr in first]}
    for name, s in zip(names[1:], scales[1:], strict=True):
        full_split = split.split("[")[0]
        by_key = {hashlib.sha1(hr).hexdigest(): lr for hr, lr in _tfds_encoded(name, data_dir, full_split)}
        missing = sum(k not in by_key for k in keys)
        if missing:
            raise UserError(f"{name} {full_split} lacks {missing} of the HR images of {names[0]} {split}")
        lr_bytes[s] = [by_key[k] for k in keys]

    def loader(i):
        return lambda: (_decode_png(first[i][0]), {s: _decode_png(lr_bytes[s][i]) for s in scales})

    return [(f"{names[0]}:{split}#{i}", loader(i)) for i in range(len(first))]


# ----------------------------------------------------------------------------------------------
# Decoding, checking and caching.
# ----------------------------------------------------------------------------------------------


def _keep(name: str, lrs: dict[int, np.ndarray], min_lr: int, skip_small: str) -> bool:
    """False (with a warning) for an image with an LR side below ``min_lr`` when skipping, else raise."""
    small = {s: lr.shape[:2] for s, lr in lrs.items() if min(lr.shape[:2]) < min_lr}
    if not small:
        return True
    s, (h, w) = next(iter(small.items()))
    message = f"{name}: x{s} LR image is {w}x{h}, smaller than the {min_lr}x{min_lr} LR patch"
    if skip_small == "skip":
        warnings.warn(message + "; skipped", stacklevel=3)
        return False
    if skip_small != "error":
        raise UserError(f"skip_small must be 'error' or 'skip', got {skip_small!r}")
    raise UserError(message + " (set config.data.skip_small='skip' to leave such images out)")


def run_loaders(items: list[tuple[str, Loader]]) -> list[tuple[str, np.ndarray, dict[int, np.ndarray]]]:
    """Runs (name, loader) pairs on a thread pool; returns (name, hr, {scale: lr}) in input order."""
    with concurrent.futures.ThreadPoolExecutor(min(MAX_DECODE_THREADS, max(1, len(items)))) as pool:
        loaded = list(pool.map(lambda item: item[1](), items))
    return [(name, hr, lrs) for (name, _), (hr, lrs) in zip(items, loaded, strict=True)]


def check_all(
    decoded: list, scales: Sequence[int], min_lr: int, skip_small: str
) -> list[tuple[str, np.ndarray, dict[int, np.ndarray]]]:
    """Checks every (name, hr, {scale: lr}) pair; drops (warning) or rejects too-small images.

    Args:
        decoded: (name, hr, {scale: lr}) triples.
        scales: the scales every image must have.
        min_lr: smallest LR side allowed (the LR patch size; 1 for evaluation).
        skip_small: "error" or "skip".

    Returns:
        The kept triples, in input order.

    Raises:
        UserError: a malformed pair, or a too-small image when ``skip_small == "error"``.
    """
    out = []
    for name, hr, lrs in decoded:
        for s in scales:
            check_pair(name, hr, lrs[s], s)
        if _keep(name, lrs, min_lr, skip_small):
            out.append((name, hr, lrs))
    return out


def to_pairs(decoded: list, scales: Sequence[int]) -> ImagePairs:
    """Packs decoded (name, hr, {scale: lr}) triples into an :class:`ImagePairs`."""
    return ImagePairs(
        names=tuple(d[0] for d in decoded),
        hr=tuple(d[1] for d in decoded),
        lr={s: tuple(d[2][s] for d in decoded) for s in scales},
    )


def from_pairs(pairs: ImagePairs) -> list[tuple[str, np.ndarray, dict[int, np.ndarray]]]:
    """The (name, hr, {scale: lr}) triples of an :class:`ImagePairs`."""
    return [(name, pairs.hr[i], {s: v[i] for s, v in pairs.lr.items()}) for i, name in enumerate(pairs.names)]


def load_pairs(
    data_config,
    split: str,
    scales: Sequence[int],
    min_lr: int,
    process_index: int = 0,
    process_count: int = 1,
) -> ImagePairs:
    """Decodes (or reads from the cache) this process's shard of a split.

    Args:
        data_config: ``config.data`` (source, tfds_name, data_dir, degradation, train_range,
            val_range, cache_dir, skip_small).
        split: "train" or "val".
        scales: scales whose LR images are needed.
        min_lr: smallest LR side allowed (the LR patch size for training, 1 for evaluation).
        process_index: this process; it reads a contiguous, disjoint chunk of the split.
        process_count: number of processes sharing the split.

    Returns:
        The decoded :class:`ImagePairs` of this process's shard.

    Raises:
        UserError: an unknown source/split/degradation, missing files, or too-small images.
    """
    source, degradation = data_config.source, data_config.degradation
    if source not in SOURCES:
        raise UserError(f"config.data.source must be one of {SOURCES}, got {source!r}")
    if degradation not in DEGRADATIONS:
        raise UserError(f"config.data.degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    if split not in ("train", "val"):
        raise UserError(f"split must be 'train' or 'val', got {split!r}")
    if source == "skimage":
        ids = list(SKIMAGE_TRAIN if split == "train" else SKIMAGE_VAL)
    else:
        ids = image_numbers(data_config.train_range if split == "train" else data_config.val_range)
    ids = shard_numbers(ids, process_index, process_count)
    description = {
        "source": source,
        "ids": ids,
        "scales": sorted(scales),
        "degradation": degradation,
        "data_dir": os.path.abspath(data_config.data_dir) if data_config.data_dir else None,
        "tfds_name": data_config.tfds_name if source == "tfds" else None,
    }
    folder = cache.cache_folder(data_config.cache_dir, description) if data_config.cache_dir else None
    if folder and cache.exists(folder):
        names, hr, lr = cache.load_cache(folder, scales)
        decoded = from_pairs(ImagePairs(names=names, hr=hr, lr=lr))
        return to_pairs(check_all(decoded, scales, min_lr, data_config.skip_small), scales)

    if source == "tfds":
        items = tfds_loaders(data_config.tfds_name, data_config.data_dir, ids, scales, degradation)
    elif source == "div2k_folder":
        items = div2k_folder_loaders(data_config.data_dir, ids, scales, degradation)
    elif source == "folder":
        items = folder_loaders(data_config.data_dir, ids, scales)
    else:
        items = skimage_loaders(ids, scales)
    decoded = run_loaders(items)
    if folder:
        # The cache holds every image; the size check runs on each load, so a new patch size
        # needs no rebuild.
        cache.save_cache(to_pairs(check_all(decoded, scales, 0, "error"), scales), folder)
    return to_pairs(check_all(decoded, scales, min_lr, data_config.skip_small), scales)
