"""Image sources: random access to the (HR, LR) pairs of a split, decoded only when asked for.

``config.data.source`` picks TFDS's ``div2k`` (ArrayRecord, no TensorFlow at training time), the
official DIV2K folders, a folder of HR images, a paired HR/LR folder, or scikit-image's photographs;
``docs/input_pipeline.md`` gives each layout. A missing bicubic LR is made from the HR.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence

import numpy as np

from edsr_jax.errors import UserError, quote
from edsr_jax.extras import require
from edsr_jax.imaging import files

SOURCES = ("tfds", "div2k_folder", "folder", "paired_folder", "skimage")
DEGRADATIONS = ("bicubic", "unknown")
SPLITS = ("train", "val")
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


class PairSource:
    """Random access to the images of one split; subclasses decode.

    ``names`` label images in messages; ``description`` is everything that fixes the pixels (the
    disk cache's key).
    """

    def __init__(self, names: Sequence[str], scales: Sequence[int], description: dict):
        self.names = tuple(names)
        self.scales = tuple(int(s) for s in scales)
        self.description = {**description, "scales": sorted(self.scales), "names": list(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def read_hr(self, i: int) -> np.ndarray:
        """Image ``i``'s HR image, uint8 (H, W, 3)."""
        raise NotImplementedError

    def read_lr(self, i: int, scale: int) -> np.ndarray | None:
        """Image ``i``'s LR image at ``scale``, or None when it is made from the HR image."""
        raise NotImplementedError

    def lr_shape(self, i: int, scale: int) -> tuple[int, int] | None:
        """``(h, w)`` of image ``i``'s LR without decoding it, or None if that needs a decode."""
        return None

    def lr_file(self, i: int, scale: int) -> str | None:
        return None  # the file image i's LR image at scale is read from, for messages


class FileSource(PairSource):
    """Images in files: HR paths, and per scale an LR path or None (made by MATLAB bicubic)."""

    def __init__(self, names, hr_paths, lr_paths: dict[int, Sequence[str | None]], description: dict):
        self.hr_paths = tuple(hr_paths)
        self.lr_paths = {int(s): tuple(p) for s, p in lr_paths.items()}
        # A changed file (size or modification time) gets a new disk cache.
        used = [*self.hr_paths, *(p for paths in self.lr_paths.values() for p in paths if p)]
        stamps = [[os.path.abspath(p), os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in used]
        super().__init__(names, lr_paths.keys(), {**description, "files": stamps})

    def read_hr(self, i: int) -> np.ndarray:
        return files.read_image(self.hr_paths[i])

    def read_lr(self, i: int, scale: int) -> np.ndarray | None:
        path = self.lr_paths[scale][i]
        return None if path is None else files.read_image(path)

    def lr_shape(self, i: int, scale: int) -> tuple[int, int]:
        path = self.lr_paths[scale][i]
        if path is not None:
            return files.image_size(path)
        h, w = files.image_size(self.hr_paths[i])
        return h // scale, w // scale

    def lr_file(self, i: int, scale: int) -> str | None:
        return self.lr_paths[scale][i]


def image_numbers(image_range: Sequence[int]) -> list[int]:
    """1-based image numbers ``first..last`` (inclusive) of a ``(first, last)`` range."""
    first, last = (int(v) for v in image_range)
    if not 1 <= first <= last:
        raise UserError(
            f"an image range must be (first, last) with 1 <= first <= last, got {tuple(image_range)}"
        )
    return list(range(first, last + 1))


def div2k_folder_source(
    data_dir: str, numbers: Sequence[int], scales: Sequence[int], degradation: str
) -> FileSource:
    """DIV2K image numbers in the official folder layout under ``data_dir``; UserError for a missing file."""
    hr_paths, lr_paths = [], {int(s): [] for s in scales}
    for n in numbers:
        if not 1 <= n <= DIV2K_NUM_TOTAL:
            raise UserError(f"DIV2K image numbers are 1..{DIV2K_NUM_TOTAL}, got {n}")
        part = "train" if n <= DIV2K_NUM_TRAIN else "valid"
        hr_path = os.path.join(data_dir, f"DIV2K_{part}_HR", f"{n:04d}.png")
        if not os.path.isfile(hr_path):
            raise UserError(f"DIV2K HR image not found: {hr_path} (config.data.data_dir={data_dir})")
        hr_paths.append(hr_path)
        for s in lr_paths:
            p = os.path.join(data_dir, f"DIV2K_{part}_LR_{degradation}", f"X{s}", f"{n:04d}x{s}.png")
            if not os.path.isfile(p):
                if degradation != "bicubic":
                    raise UserError(f"DIV2K LR image not found: {p} (only bicubic LR can be made)")
                p = None
            lr_paths[s].append(p)
    description = {
        "source": "div2k_folder",
        "data_dir": os.path.abspath(data_dir),
        "degradation": degradation,
    }
    return FileSource(hr_paths, hr_paths, lr_paths, description)


def _numbered(folder: str, numbers: Sequence[int]) -> list[str]:
    """Images ``numbers`` (1-based) of ``folder``, sorted by file name."""
    found = files.list_images(folder)
    if max(numbers) > len(found):
        raise UserError(f"the image range goes up to {max(numbers)} but {folder} holds {len(found)} images")
    return [found[n - 1] for n in numbers]


def folder_source(data_dir: str, numbers: Sequence[int], scales: Sequence[int]) -> FileSource:
    """Images ``numbers`` (1-based, by name) of a folder of HR images; LR made by MATLAB bicubic."""
    paths = _numbered(data_dir, numbers)
    description = {"source": "folder", "data_dir": os.path.abspath(data_dir)}
    return FileSource(paths, paths, {int(s): [None] * len(paths) for s in scales}, description)


def paired_folder_source(data_dir: str, numbers: Sequence[int], scales: Sequence[int]) -> FileSource:
    """Images ``numbers`` of ``data_dir/HR``, each with its file in ``data_dir/LR``."""
    from edsr_jax.data import benchmarks

    hr_paths = _numbered(os.path.join(data_dir, benchmarks.HR_DIR), numbers)
    lr_root = os.path.join(data_dir, benchmarks.PAIRED_LR_DIR)
    if not os.path.isdir(lr_root):
        raise UserError(f"config.data.source='paired_folder' needs {lr_root} beside {data_dir}/HR")
    lr_paths = {int(s): [] for s in scales}
    for s, hr in ((s, hr) for s in lr_paths for hr in hr_paths):
        stem = os.path.splitext(os.path.basename(hr))[0]
        lr = benchmarks.paired_lr_file(lr_root, stem, s)
        if lr is None:
            raise UserError(
                f"no LR image for {hr} at x{s} in {lr_root} (looked for {stem}x{s}.* and {stem}.*)"
            )
        lr_paths[s].append(lr)
    description = {"source": "paired_folder", "data_dir": os.path.abspath(data_dir)}
    return FileSource(hr_paths, hr_paths, lr_paths, description)


def skimage_source(names: Sequence[str], scales: Sequence[int]) -> FileSource:
    """scikit-image sample photographs by name (keys of :data:`SKIMAGE_FILES`)."""
    skimage_data = require("skimage.data", "the sample photographs (data.source 'skimage')")
    root = os.path.dirname(skimage_data.__file__)
    unknown = [n for n in names if n not in SKIMAGE_FILES]
    if unknown:
        raise UserError(f"unknown scikit-image photographs {unknown}; known: {sorted(SKIMAGE_FILES)}")
    paths = [os.path.join(root, SKIMAGE_FILES[n]) for n in names]
    return FileSource(names, paths, {int(s): [None] * len(paths) for s in scales}, {"source": "skimage"})


# --- TFDS ------------------------------------------------------------------------------------------


def tfds_name_for_scale(tfds_name: str, degradation: str, scale: int) -> str:
    """``div2k/bicubic_x2``-style builder name for ``scale``; a bare ``div2k`` gets the degradation."""
    name = tfds_name or "div2k"
    if "/" not in name:
        name = f"{name}/{degradation}_x{scale}"
    if not re.search(r"_x\d+$", name):
        raise UserError(
            f"config.data.tfds_name must end in _x<scale> (e.g. div2k/bicubic_x2), got {tfds_name!r}"
        )
    return re.sub(r"_x\d+$", f"_x{scale}", name)


def tfds_split(numbers: Sequence[int]) -> tuple[str, int]:
    """``(split, offset)`` of a contiguous DIV2K range inside train (1..800) or validation (801..900)."""
    first, last = min(numbers), max(numbers)
    if last - first + 1 != len(numbers):
        raise UserError(f"TFDS images must be a contiguous range, got {len(numbers)} in {first}..{last}")
    if last <= DIV2K_NUM_TRAIN:
        return "train", first - 1
    if first > DIV2K_NUM_TRAIN and last <= DIV2K_NUM_TOTAL:
        return "validation", first - 1 - DIV2K_NUM_TRAIN
    raise UserError(
        f"a TFDS image range must lie in 1..800 (train) or 801..900 (validation), got {first}..{last}"
    )


PREPARE_HINT = (
    "prepare it once (this needs TensorFlow: pip install 'edsr-jax[prepare]') with "
    "tfds.builder(NAME, data_dir=DIR).download_and_prepare(file_format='array_record'), or convert "
    "a TFRecord-prepared folder with `tfds convert_format --dataset_dir=DIR/NAME/VERSION "
    "--out_file_format=array_record`"
)


def _open_tfds(name: str, data_dir: str | None, split: str):
    """The ``as_data_source`` of one split, as raw records (serialised ``tf.train.Example``)."""
    import tensorflow_datasets as tfds

    where = data_dir or "the default data_dir"
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
        prepared = builder.is_prepared()
    except Exception as e:  # (TFDS raises many types for a name or folder it cannot use)
        raise UserError(
            f"TFDS dataset {name} cannot be opened in {where} ({quote(e)}); {PREPARE_HINT}"
        ) from None
    if not prepared:
        raise UserError(f"TFDS dataset {name} is not prepared in {where}; {PREPARE_HINT}")
    try:
        return builder.as_data_source(split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    except NotImplementedError:
        raise UserError(
            f"TFDS dataset {name} in {where} is not in the ArrayRecord format that random access needs; "
            + PREPARE_HINT
        ) from None


def _raw(record: bytes, key: str) -> bytes:
    """The encoded image ``key`` of a raw TFDS record (TFDS's TensorFlow-free proto)."""
    from tensorflow_datasets.proto import tf_example_pb2

    return tf_example_pb2.Example.FromString(record).features.feature[key].bytes_list.value[0]


class TfdsSource(PairSource):
    """DIV2K pairs from TFDS ArrayRecord sources, one builder per scale.

    Images are positions in the first scale's (hashed, fixed) order; the other scales are aligned to
    it by the bytes of the HR image, once, when opened.
    """

    def __init__(
        self, tfds_name: str, data_dir: str | None, numbers: Sequence[int], scales, degradation: str
    ):
        split, offset = tfds_split(numbers)
        scales = [int(s) for s in scales]
        self.builder_names = {s: tfds_name_for_scale(tfds_name, degradation, s) for s in scales}
        self.sources = {s: _open_tfds(self.builder_names[s], data_dir, split) for s in scales}
        first = self.builder_names[scales[0]]
        available = len(self.sources[scales[0]])
        if offset + len(numbers) > available:
            raise UserError(
                f"{first} {split} has {available} images, fewer than the range {min(numbers)}..{max(numbers)}"
            )
        self.positions = {scales[0]: list(range(offset, offset + len(numbers)))}
        if len(scales) > 1:
            keys = [
                hashlib.sha1(_raw(self.sources[scales[0]][p], "hr")).hexdigest()
                for p in self.positions[scales[0]]
            ]
            for s in scales[1:]:
                source = self.sources[s]
                where = {hashlib.sha1(_raw(source[p], "hr")).hexdigest(): p for p in range(len(source))}
                missing = sum(k not in where for k in keys)
                if missing:
                    raise UserError(
                        f"{self.builder_names[s]} {split} lacks {missing} of the HR images of {first}"
                    )
                self.positions[s] = [where[k] for k in keys]
        names = [f"{first}:{split}#{p}" for p in self.positions[scales[0]]]
        description = {
            "source": "tfds",
            "builders": self.builder_names,
            "data_dir": data_dir,
            "split": split,
            "offset": offset,
        }
        super().__init__(names, scales, description)

    def read_hr(self, i: int) -> np.ndarray:
        s = self.scales[0]
        return files.decode_image(
            _raw(self.sources[s][self.positions[s][i]], "hr"), f"the HR image of {self.names[i]}"
        )

    def read_lr(self, i: int, scale: int) -> np.ndarray:
        record = self.sources[scale][self.positions[scale][i]]
        return files.decode_image(_raw(record, "lr"), f"the x{scale} LR image of {self.names[i]}")

    def lr_shape(self, i: int, scale: int) -> tuple[int, int]:
        record = self.sources[scale][self.positions[scale][i]]
        return files.image_size(_raw(record, "lr"), f"the x{scale} LR image of {self.names[i]}")


# --- opening a split -------------------------------------------------------------------------------


def open_source(data_config, split: str, scales: Sequence[int]) -> PairSource:
    """The :class:`PairSource` of ``split`` ("train" or "val") of ``config.data``."""
    source, degradation = data_config.source, data_config.degradation
    if source not in SOURCES:
        raise UserError(f"config.data.source must be one of {SOURCES}, got {source!r}")
    if degradation not in DEGRADATIONS:
        raise UserError(f"config.data.degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    if split not in SPLITS:
        raise UserError(f"split must be one of {SPLITS}, got {split!r}")
    if source == "skimage":
        return skimage_source(SKIMAGE_TRAIN if split == "train" else SKIMAGE_VAL, scales)
    numbers = image_numbers(data_config.train_range if split == "train" else data_config.val_range)
    if source == "tfds":
        return TfdsSource(data_config.tfds_name, data_config.data_dir or None, numbers, scales, degradation)
    if not data_config.data_dir:
        raise UserError(f"config.data.source={source!r} needs config.data.data_dir (the image folder)")
    if source == "div2k_folder":
        return div2k_folder_source(data_config.data_dir, numbers, scales, degradation)
    if source == "paired_folder":
        return paired_folder_source(data_config.data_dir, numbers, scales)
    return folder_source(data_config.data_dir, numbers, scales)
