"""Benchmark sets (Set5, Set14, B100, Urban100, DIV2K valid, your own) from local folders.

EDSR's layout, ``<root>/<Set>/HR/<name>.png`` and ``<root>/<Set>/LR_bicubic/X<s>/<name>x<s>.png``;
a missing LR is made with the MATLAB-exact :func:`~edsr_jax.imaging.resize.downscale`. A paired set
(your own degradation) has ``LR/`` instead, and a missing LR file there is an error.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from edsr_jax.errors import UserError
from edsr_jax.imaging import files, resize

# Folder names of the EDSR layout.
HR_DIR = "HR"
LR_DIR = "LR_bicubic"
# A set with this folder is paired: its LR images (any degradation) are files, never made here.
PAIRED_LR_DIR = "LR"


@dataclasses.dataclass(frozen=True)
class Sample:
    """One evaluation pair, uint8 (h, w, 3) LR and its HR cropped to LR size x scale.

    ``lr_generated`` says the LR was made here from the HR (no LR file).
    """

    name: str
    lr: np.ndarray
    hr: np.ndarray
    lr_generated: bool = False


def _find_image(folder: str, bases: tuple[str, ...]) -> str | None:
    """The first ``<base><ext>`` file in ``folder`` (bases in order, any image extension, either case)."""
    if not os.path.isdir(folder):
        return None
    for base in bases:
        for ext in files.IMAGE_EXTENSIONS:
            for candidate in (os.path.join(folder, base + ext), os.path.join(folder, base + ext.upper())):
                if os.path.isfile(candidate):
                    return candidate
    return None


def paired_lr_file(lr_root: str, stem: str, scale: int) -> str | None:
    """The LR file of HR ``stem`` in a paired set: ``[X<s>/]<stem>[x<s>].*``, or None."""
    bases = (f"{stem}x{scale}", stem)
    return _find_image(os.path.join(lr_root, f"X{scale}"), bases) or _find_image(lr_root, bases)


def lr_path(root: str, name: str, scale: int, stem: str) -> str | None:
    """The LR file of ``stem``: ``LR_bicubic/X<s>/<stem>x<s>.*`` (None when absent: it is made), or the
    paired set's file; UserError when a paired set lacks it.
    """
    paired = os.path.join(root, name, PAIRED_LR_DIR)
    if os.path.isdir(paired):
        found = paired_lr_file(paired, stem, scale)
        if found is None:
            raise UserError(
                f"paired set {name!r} has no LR image for {stem} at x{scale} in {paired} "
                f"(looked for {stem}x{scale}.* and {stem}.*, also under X{scale}/)"
            )
        return found
    return _find_image(os.path.join(root, name, LR_DIR, f"X{scale}"), (f"{stem}x{scale}",))


def hr_files(root: str, name: str) -> list[str]:
    """The HR image files of set ``name``, sorted; UserError if the set or its HR folder is missing."""
    set_dir = os.path.join(root, name)
    if not os.path.isdir(set_dir):
        available = (
            sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
            if os.path.isdir(root)
            else []
        )
        hint = f" (found: {', '.join(available)})" if available else ""
        raise UserError(f"benchmark set {name!r} not found: no folder {set_dir}{hint}")
    hr_dir = os.path.join(set_dir, HR_DIR)
    if not os.path.isdir(hr_dir):
        raise UserError(f"benchmark set {name!r} has no {HR_DIR} folder: expected {hr_dir}")
    return files.list_images(hr_dir)


def check_pair(name: str, hr: np.ndarray, lr: np.ndarray, scale: int, lr_file: str | None = None) -> None:
    """The one pair check: uint8 RGB, LR x ``scale`` within the HR; sizes in errors as WxH."""
    for a, what in ((hr, "HR"), (lr, "LR")):
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
            raise UserError(f"{name}: {what} image must be uint8 (H, W, 3), got {a.dtype} {a.shape}")
    if lr.shape[0] * scale > hr.shape[0] or lr.shape[1] * scale > hr.shape[1]:
        what = f"LR image {lr_file}" if lr_file else "LR image"
        raise UserError(
            f"{name}: {what} ({lr.shape[1]}x{lr.shape[0]}) times scale {scale} is larger than "
            f"its HR image {hr.shape[1]}x{hr.shape[0]}"
        )


def make_sample(
    name: str, hr: np.ndarray, lr: np.ndarray, scale: int, *, lr_generated: bool = False
) -> Sample:
    """The :class:`Sample` of a checked pair: the HR cropped top-left to LR size x scale."""
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    return Sample(
        name=name, lr=np.asarray(lr), hr=np.ascontiguousarray(hr[:h, :w]), lr_generated=lr_generated
    )


def load_pair(hr_file: str, lr_file: str | None, scale: int, *, boundary: str = "replicate") -> Sample:
    """One :class:`Sample`: reads (or makes) the LR and crops the HR; UserError naming a bad file."""
    stem = os.path.splitext(os.path.basename(hr_file))[0]
    hr = files.read_image(hr_file)
    if lr_file is None:
        lr = resize.downscale(hr, scale, boundary=boundary, name=f"HR image {hr_file}")
    else:
        lr = files.read_image(lr_file)
    check_pair(hr_file, hr, lr, scale, lr_file)
    return make_sample(stem, hr, lr, scale, lr_generated=lr_file is None)


def load_benchmark(
    root: str, name: str, scale: int, *, boundary: str = "replicate", skipped: list | None = None
) -> list[Sample]:
    """All pairs of benchmark set ``name`` at ``scale``, sorted by image name.

    ``boundary`` is how missing LR files are made (``"mirror"``: the EDSR benchmark package). With
    ``skipped`` a list, an unreadable image is left out and ``{"name", "error"}`` appended to it.

    Raises:
      UserError: the set is missing or empty, or (without ``skipped``) a file cannot be read.
    """
    if int(scale) != scale or scale < 1:
        raise UserError(f"scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    samples = []
    for hr_file in hr_files(root, name):
        stem = os.path.splitext(os.path.basename(hr_file))[0]
        try:
            samples.append(load_pair(hr_file, lr_path(root, name, scale, stem), scale, boundary=boundary))
        except UserError as e:
            if skipped is None:
                raise
            skipped.append({"name": stem, "error": " ".join(str(e).split())})
    if not samples:
        raise UserError(f"benchmark set {name!r} in {root} has no readable image at x{scale}")
    return samples
