"""Upscaling image files and folders with a trained model, keeping what the files were.

Gray stays gray (8-bit: more bits out would be invented), alpha is upscaled by bicubic where the
format keeps it, palettes and other modes become RGB (``docs/upscaling.md``). Writes are atomic;
large images are tiled, with the same output as whole (:mod:`edsr_jax.inference`).
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
# Pillow formats that keep an alpha channel as we write it (not JPEG; BMP's is read back without).
ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")
# Pillow modes read as grayscale, and those with an alpha channel (last channel).
GRAY_MODES = ("L", "LA", "La", "1", "I", "F")
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
# ITU-R 601 luma weights (Pillow's RGB -> L conversion).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class Decomposed:
    """An image split into uint8 RGB for the network, its alpha (or None), and whether it is gray."""

    rgb: np.ndarray
    alpha: np.ndarray | None
    gray: bool


def decompose(raw: files.RawImage) -> Decomposed:
    """Splits a decoded image into RGB for the model, its alpha and whether it is grayscale."""
    mode = raw.mode
    alpha = np.ascontiguousarray(raw.array[..., -1], np.uint8) if mode in ALPHA_MODES else None
    gray = mode in GRAY_MODES or mode.startswith("I;16")
    return Decomposed(rgb=files.to_rgb_uint8(raw), alpha=alpha, gray=gray)


def to_luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 luma of a uint8 RGB image (Pillow's ``convert("L")`` weights), in blocks of rows."""
    out = np.empty(rgb.shape[:2], np.uint8)
    weights = np.asarray(LUMA_WEIGHTS, np.float32)
    rows = max(1, LUMA_BLOCK_PIXELS // max(1, rgb.shape[1]))
    for y in range(0, rgb.shape[0], rows):
        luma = np.asarray(rgb[y : y + rows], np.float32) @ weights
        out[y : y + rows] = np.clip(np.round(luma), 0, 255)
    return out


def recompose(sr_rgb: np.ndarray, parts: Decomposed, scale: int, keep_alpha: bool = True) -> np.ndarray:
    """The array to write: gray or RGB, plus the bicubic-upscaled alpha if any and ``keep_alpha``."""
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
        """``tile`` None: tile large images by :data:`DEFAULT_TILE`; 0: never; N: always N x N LR tiles."""
        self.model, self.variables, self.scale = model, variables, int(scale)
        self.self_ensemble, self.tile, self.devices = bool(self_ensemble), tile, devices
        self._cache: dict[int | None, Callable] = {}

    def tile_for(self, h: int, w: int) -> int | None:
        """The tile size for an ``h x w`` LR image (None: whole, also when one tile covers it)."""
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
        """uint8 (H, W, 3) -> quantised uint8 (H*s, W*s, 3), into ``out`` if given."""
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
    """Activation bytes a whole-image pass holds at once: two float32 feature maps at the output size."""
    return 2 * h * w * scale**2 * int(model.num_features) * 4


@contextlib.contextmanager
def output_buffer(dst: str, shape: tuple[int, ...], in_memory_bytes: int):
    """A uint8 array of ``shape``, memory-mapped beside ``dst`` above ``in_memory_bytes`` (bounded memory)."""
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
    """Reads ``src``, upscales it, writes ``dst`` atomically (its extension picks the format), returns
    the output's shape; host memory stays about the uint8 output plus a few tiles.

    ``upscale_fn`` is ``(uint8 (H, W, 3), out=None) -> uint8 (H*s, W*s, 3)``, e.g. :class:`UpscalerCache`.
    UserError for an unreadable or too-large input, an unsupported mode or an unknown extension.
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
    """``(model, variables, scale)`` from a checkpoint, the scale checked against the model's."""
    from edsr_jax.checkpoint import exported

    model, variables = exported.load_model(checkpoint, dtype=dtype, weights=weights)
    return model, variables, inference.check_scale(model, scale, f"checkpoint {checkpoint}")
