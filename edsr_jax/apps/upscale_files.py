"""Upscaling image files and folders with a trained model, keeping what the files were.

What happens to each kind of image (Pillow mode):

* RGB (PNG, JPEG, BMP, TIFF, WebP, ...): the model upscales it.
* Grayscale (``L``, bilevel ``1``): replicated to RGB for the model, written back as 8-bit
  grayscale (the luma of the output, ITU-R 601 weights as Pillow's ``convert("L")``).
* 16-bit and 32-bit grayscale (``I;16``, ``I``, ``F``): processed as 8-bit (value / 257, rounded)
  and written back as **8-bit** grayscale; the network works on 8-bit images, so more bits out
  would be invented. (Pillow already reads 16-bit-per-channel RGB PNGs as 8-bit RGB.)
* With alpha (``RGBA``, ``LA``, ``PA``): colour through the model, alpha upscaled with MATLAB-style
  bicubic (:func:`edsr_jax.imaging.resize.imresize`), written back with alpha where the format keeps it
  (PNG, TIFF, WebP); JPEG and BMP have no alpha, so it is dropped there.
* Palette (``P``): expanded to RGB and written as RGB (a palette cannot hold the new colours).
* CMYK, YCbCr, LAB, HSV: converted to RGB, written as RGB.

The output format follows the output file's extension (in a folder run: the input's name and
extension). Outputs are written to a temporary name and renamed, so a failure never leaves a
partial file. Large images (over :data:`LARGE_IMAGE_PIXELS`, or whose whole-image pass would hold
over :data:`WHOLE_IMAGE_BYTES` of activations) are cut into overlapping tiles, whose output equals
the whole image's (see :mod:`edsr_jax.inference`). Input and output paths are planned by
:func:`edsr_jax.imaging.files.plan_outputs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable

import numpy as np

from edsr_jax import inference
from edsr_jax.imaging import files, resize

# LR images with more pixels than this are tiled unless a tile size is given (bounded memory)...
LARGE_IMAGE_PIXELS = 512 * 512
# ... and so are those whose whole-image pass would hold more activations than this (bytes).
WHOLE_IMAGE_BYTES = 512 * 2**20
# Tile side (LR pixels) used for large images by default.
DEFAULT_TILE = 256
# Outputs larger than this (bytes of uint8 pixels) are built in a memory-mapped file, not in memory.
IN_MEMORY_BYTES = 2 * 2**30
# Pixels of one block of rows converted to grayscale at a time.
LUMA_BLOCK_PIXELS = 2**22
# Pillow formats that store an alpha channel as we write it (JPEG cannot; Pillow reads BMP's back
# without it).
ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")
# Pillow modes read as grayscale, and those with an alpha channel (last channel).
GRAY_MODES = ("L", "LA", "La", "1", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# ITU-R 601 luma weights (Pillow's RGB -> L conversion).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class Decomposed:
    """An image split into what the model sees and what is carried around it.

    Attributes:
      rgb: uint8 (H, W, 3) for the network.
      alpha: uint8 (H, W) alpha channel, or None.
      gray: write the result back as grayscale.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    gray: bool


def decompose(raw: files.RawImage) -> Decomposed:
    """Splits a decoded image into RGB for the model, its alpha and whether it is grayscale.

    Raises:
      UserError: a mode that cannot be converted to RGB.
    """
    mode = raw.mode
    alpha = np.ascontiguousarray(raw.array[..., -1], np.uint8) if mode in ALPHA_MODES else None
    gray = mode in GRAY_MODES or mode.startswith("I;16")
    return Decomposed(rgb=files.to_rgb_uint8(raw), alpha=alpha, gray=gray)


def to_luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W) luma of a uint8 (H, W, 3) image (Pillow's ``convert("L")`` weights, rounded),
    computed in blocks of rows (a float copy of a block, not of the image)."""
    out = np.empty(rgb.shape[:2], np.uint8)
    weights = np.asarray(LUMA_WEIGHTS, np.float32)
    rows = max(1, LUMA_BLOCK_PIXELS // max(1, rgb.shape[1]))
    for y in range(0, rgb.shape[0], rows):
        luma = np.asarray(rgb[y : y + rows], np.float32) @ weights
        out[y : y + rows] = np.clip(np.round(luma), 0, 255)
    return out


def recompose(sr_rgb: np.ndarray, parts: Decomposed, scale: int, keep_alpha: bool = True) -> np.ndarray:
    """The array to write: grayscale or RGB, with the alpha upscaled by bicubic if there is one.

    Args:
      sr_rgb: uint8 (H*s, W*s, 3) model output.
      parts: what :func:`decompose` returned for the input.
      scale: the upscaling factor.
      keep_alpha: False for formats without alpha.

    Returns:
      uint8 (H*s, W*s) grayscale, (H*s, W*s, 2) grayscale+alpha, (..., 3) RGB or (..., 4) RGBA.
    """
    out = to_luma(sr_rgb) if parts.gray else sr_rgb
    if parts.alpha is None or not keep_alpha:
        return out
    alpha = resize.imresize(parts.alpha, scale)[: sr_rgb.shape[0], : sr_rgb.shape[1]]
    return np.concatenate([out.reshape(*out.shape[:2], -1), alpha[..., None]], axis=-1)


class UpscalerCache:
    """The model's :class:`~edsr_jax.inference.Upscaler` per tile size, created on first use: whole
    images, and tiled ones."""

    def __init__(
        self,
        model,
        variables,
        scale: int,
        *,
        self_ensemble: bool = False,
        tile: int | None = None,
        devices=None,
    ):
        """Args: see :func:`edsr_jax.inference.make_upscaler`; ``tile`` None: tile large images
        with :data:`DEFAULT_TILE`; 0: never tile; N: every image in N x N LR tiles."""
        self.model, self.variables, self.scale = model, variables, int(scale)
        self.self_ensemble, self.tile, self.devices = bool(self_ensemble), tile, devices
        self._cache: dict[int | None, Callable] = {}

    def tile_for(self, h: int, w: int) -> int | None:
        """The tile size used for an ``h x w`` LR image (None: whole image, also when the tile
        would cover it)."""
        tile = DEFAULT_TILE
        if self.tile is not None:
            tile = int(self.tile) or None
        elif (
            h * w <= LARGE_IMAGE_PIXELS
            and whole_image_bytes(self.model, self.scale, h, w) <= WHOLE_IMAGE_BYTES
        ):
            tile = None
        return tile if tile and tile < max(h, w) else None

    def __call__(self, rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 (H*s, W*s, 3), clipped and rounded like a scored output, into
        ``out`` if given (tiled images are quantised tile by tile)."""
        tile = self.tile_for(*rgb.shape[:2])
        if tile not in self._cache:
            self._cache[tile] = inference.make_upscaler(
                self.model,
                self.variables,
                self.scale,
                self_ensemble=self.self_ensemble,
                tile=tile,
                devices=self.devices,
            )
        return self._cache[tile].upscale_uint8(rgb, out=out)


def whole_image_bytes(model, scale: int, h: int, w: int) -> int:
    """About the activations a whole-image pass of ``model`` holds at once on an ``h x w`` LR
    image: two float32 feature maps at the output resolution (the upsampler's last conv and its
    pixel shuffle), ``2 * h * w * scale^2 * F * 4`` bytes."""
    return 2 * h * w * scale**2 * int(model.num_features) * 4


@contextlib.contextmanager
def output_buffer(dst: str, shape: tuple[int, ...], in_memory_bytes: int):
    """A uint8 array for an output of ``shape``: in memory, or above ``in_memory_bytes`` memory-mapped
    from a temporary file beside ``dst`` (deleted afterwards), so that host memory stays bounded."""
    size = int(np.prod(shape))
    if size <= in_memory_bytes:
        yield np.empty(shape, np.uint8)
        return
    folder = os.path.dirname(os.path.abspath(dst))
    with tempfile.NamedTemporaryFile(prefix=".edsr-jax-output-", suffix=".u8", dir=folder) as backing:
        array = np.memmap(backing, dtype=np.uint8, mode="w+", shape=shape)
        try:
            yield array
        finally:
            del array


def upscale_file(
    src: str,
    dst: str,
    upscale_fn: Callable[..., np.ndarray],
    scale: int,
    *,
    in_memory_bytes: int = IN_MEMORY_BYTES,
) -> tuple:
    """Reads ``src``, upscales it, writes ``dst`` atomically (nothing is written on failure).

    Host memory is about the uint8 output (3 bytes per output pixel) plus a few tiles: tiled
    images are quantised tile by tile, grayscale is converted in blocks of rows, and PNG is encoded
    in blocks of rows. Outputs over ``in_memory_bytes`` are built in a memory-mapped temporary
    file beside ``dst`` instead (disk, not memory). Alpha channels are upscaled whole (float).

    Args:
      src: the input image file.
      dst: the output file (checked by :func:`edsr_jax.imaging.files.plan_outputs`); its
        extension picks the format; its folder is created.
      upscale_fn: ``(uint8 (H, W, 3), out=None) -> uint8 (H*s, W*s, 3)``, e.g. an :class:`UpscalerCache`.
      scale: the upscaling factor.
      in_memory_bytes: the largest output held in memory.

    Returns:
      The output array's shape.

    Raises:
      UserError: a missing, empty, truncated or non-image input, one over Pillow's pixel limit,
        an unsupported mode or an unknown output extension.
    """
    fmt = files.output_format(dst)
    parts = decompose(files.load_raw(src))
    h, w = parts.rgb.shape[:2]
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with output_buffer(dst, (h * scale, w * scale, 3), in_memory_bytes) as buffer:
        sr = upscale_fn(parts.rgb, out=buffer)
        out = recompose(sr, parts, scale, keep_alpha=fmt in ALPHA_FORMATS)
        files.write_image(dst, out)
        return out.shape


def load_for_upscaling(checkpoint: str, scale: int | None, dtype=None, weights: str = "auto"):
    """``(model, variables, scale)`` from a checkpoint, the scale checked against the model's.

    Raises:
      UserError: a missing or empty checkpoint (what :func:`edsr_jax.load_model` says), a scale
        the model lacks (naming the ones it has), or no scale given for a multi-scale model.
    """
    from edsr_jax.checkpoint import exported

    model, variables = exported.load_model(checkpoint, dtype=dtype, weights=weights)
    return model, variables, inference.check_scale(model, scale, f"checkpoint {checkpoint}")
