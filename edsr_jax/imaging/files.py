"""Image files: the one reader and writer, extension list, folder lister and output planner.

Reading is :func:`load_raw` (decode, report Pillow's mode) then :func:`to_rgb_uint8`, so callers
can handle unusual modes; writes are atomic (:mod:`edsr_jax.atomic`): never a half-written image.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

from edsr_jax import atomic
from edsr_jax.errors import UserError

# PNG outputs larger than this (bytes of pixels) are encoded in blocks of rows straight to disk.
STREAM_BYTES = 64 * 2**20
# Environment variable that raises (or lowers) Pillow's decompression-bomb limit (pixels).
MAX_PIXELS_ENV = "EDSR_JAX_MAX_IMAGE_PIXELS"
# File extensions treated as images when scanning folders (lower case).
IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


@dataclasses.dataclass(frozen=True)
class RawImage:
    """A decoded image as Pillow gave it: pixels in the mode's dtype, the mode, the path, and for mode
    ``"P"`` the (256, 3) uint8 palette that ``array`` indexes.
    """

    array: np.ndarray
    mode: str
    path: str
    palette: np.ndarray | None = None


def pixel_limit() -> int | None:
    """Pixels edsr-jax decodes at most: :data:`MAX_PIXELS_ENV`, else Pillow's limit (None: none)."""
    from PIL import Image

    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return Image.MAX_IMAGE_PIXELS
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{MAX_PIXELS_ENV} must be a number of pixels, got {value!r}") from None


def _open_lazily(fp: BinaryIO, name: str):
    """Pillow's image for ``fp``, header only, asking each plugin as ``Image.open`` does but without
    Pillow's global bomb limit (:func:`pixel_limit` rules instead, Pillow's global left unchanged).
    """
    from PIL import Image

    prefix = fp.read(16)
    for loader in (Image.preinit, Image.init):
        loader()
        for fmt in list(Image.ID):
            factory, accept = Image.OPEN[fmt]
            if accept is not None and accept(prefix) is not True:
                continue
            fp.seek(0)
            try:
                return factory(fp, name)
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise UserError(f"not an image file (or a format Pillow cannot read): {name}")


def _decode(fp: BinaryIO, name: str) -> RawImage:
    """Decodes an open image file after the decompression-bomb guard."""
    limit = pixel_limit()
    try:
        with _open_lazily(fp, name) as img:
            width, height = img.size
            if limit is not None and width * height > limit:
                raise UserError(
                    f"image {name} ({width}x{height}) is larger than the limit of {limit:,} pixels (a "
                    "guard against decompression bombs); if you trust the file, raise the limit with "
                    f"the environment variable {MAX_PIXELS_ENV}=<pixels>"
                )
            img.load()
            mode = img.mode
            palette = None
            if mode == "P":
                pal = np.asarray(img.getpalette("RGB") or [], np.uint8)
                palette = np.zeros((256, 3), np.uint8)
                palette[: len(pal) // 3] = pal.reshape(-1, 3)
                img = img.copy()
            array = np.array(img)
    except UserError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot decode image {name}: {e}") from None
    return RawImage(array=array, mode=mode, path=name, palette=palette)


def _check_file(path: str) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"image file not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"expected an image file, got a folder: {path}")
    if os.path.getsize(path) == 0:
        raise UserError(f"image file is empty (0 bytes): {path}")
    return path


def load_raw(path: str) -> RawImage:
    """Opens and fully decodes an image file; UserError if missing, empty, broken or too large."""
    path = _check_file(path)
    try:
        fp = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot decode image {path}: {e}") from None
    with fp:
        return _decode(fp, path)


def image_size(source: str | bytes, what: str = "image bytes") -> tuple[int, int]:
    """``(h, w)`` of an image file or of encoded bytes (named ``what``), from the header."""
    name = what if isinstance(source, bytes) else _check_file(source)
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else open(name, "rb")
        with fp, _open_lazily(fp, name) as img:
            w, h = img.size
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot read image {name}: {e}") from None
    return h, w


def to_rgb_uint8(raw: RawImage) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a :class:`RawImage`: gray replicated, palettes expanded, alpha dropped (as
    the official code does), 16/32-bit gray scaled to 8 bits with rounding.
    """
    a, mode = raw.array, raw.mode
    if mode == "RGB":
        return np.ascontiguousarray(a, np.uint8)
    if mode in ("RGBA", "RGBX", "RGBa"):
        return np.ascontiguousarray(a[..., :3], np.uint8)
    if mode in ("L", "LA", "La", "1"):
        gray = a[..., 0] if a.ndim == 3 else a
        gray = gray.astype(np.uint8) * (255 if mode == "1" else 1)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("P", "PA"):
        idx = a[..., 0] if a.ndim == 3 else a
        return raw.palette[idx]
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit (0..65535) and 32-bit integer/float grayscale: map 65535 -> 255.
        gray = np.clip(np.floor(a.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        from PIL import Image

        return np.asarray(Image.fromarray(a, mode).convert("RGB"))
    raise UserError(f"image mode {mode!r} is not supported: {raw.path}")


def read_image(path: str) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3)."""
    return to_rgb_uint8(load_raw(path))


def decode_image(data: bytes, what: str) -> np.ndarray:
    """Encoded image bytes (e.g. TFDS records) as RGB uint8, with the file reader's guard and 16-bit rule."""
    return to_rgb_uint8(_decode(io.BytesIO(data), what))


def output_format(path: str) -> str:
    """Pillow's format name for an output path's extension; UserError if Pillow cannot write it."""
    from PIL import Image

    Image.init()
    ext = os.path.splitext(path)[1].lower()
    fmt = Image.EXTENSION.get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise UserError(
            f"cannot write {path}: unknown image extension {ext or '(none)'!r} "
            "(use .png, .jpg, .bmp, .tif or .webp)"
        )
    return fmt


def write_image(path: str, array: np.ndarray) -> None:
    """Writes a uint8 HxW, HxWx2, HxWx3 or HxWx4 image atomically in the extension's format; UserError
    for a bad array or extension or a missing folder.
    """
    from PIL import Image

    path = os.fspath(path)
    array = np.asarray(array)
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4))
    if array.dtype != np.uint8 or not shape_ok:
        raise UserError(
            f"write_image needs a uint8 HxW, HxWx2, HxWx3 or HxWx4 array, got {array.dtype} "
            f"{tuple(array.shape)} for {path}"
        )
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"output folder does not exist: {folder}")
    fmt = output_format(path)
    if fmt == "PNG" and array.nbytes > STREAM_BYTES:
        _write_png_streaming(path, array)
        return
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    atomic.write_bytes(path, buffer.getvalue())


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _write_png_streaming(path: str, array: np.ndarray) -> None:
    """An 8-bit PNG ("Sub" filter, zlib 6) written in row blocks: a memory-mapped array stays on disk."""
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]  # gray, gray + alpha, RGB, RGBA
    rows = max(1, STREAM_BYTES // 8 // max(1, w * channels))
    compressor = zlib.compressobj(6)
    with atomic.open_for_writing(path) as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)))
        for y in range(0, h, rows):
            block = np.asarray(array[y : y + rows]).reshape(-1, w * channels)
            filtered = block.copy()
            filtered[:, channels:] -= block[:, :-channels]  # Sub: each byte minus the one a pixel left
            lines = np.concatenate([np.ones((len(block), 1), np.uint8), filtered], axis=1)
            data = compressor.compress(lines.tobytes())
            if data:
                f.write(_png_chunk(b"IDAT", data))
        f.write(_png_chunk(b"IDAT", compressor.flush()) + _png_chunk(b"IEND", b""))


def is_image_name(name: str) -> bool:
    """Whether a file name has an image extension and is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: str) -> list[str]:
    """Image files directly in ``folder``, sorted, hidden skipped; UserError if there are none."""
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.isfile(folder) else "does not exist"
        raise UserError(f"image folder {folder} {what}")
    names = sorted(n for n in os.listdir(folder) if is_image_name(n))
    files = [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
    if not files:
        raise UserError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files


def plan_outputs(src: str, dst: str, name: Callable[[str], str] = os.path.basename) -> list[tuple[str, str]]:
    """``[(input file, output file)]`` for a file or folder ``src`` and an output ``dst``, all checked
    before any work (a known extension, never the input).

    A folder's images go into the folder ``dst`` as ``name(file)``; a file goes to ``dst``, or into
    it when ``dst`` is a folder, ends with a separator or has no extension.
    """
    if not os.path.exists(src):
        raise UserError(f"input not found: {src}")
    if os.path.isdir(src):
        if os.path.isfile(dst) or (not os.path.isdir(dst) and is_image_name(os.path.basename(dst))):
            raise UserError(f"input {src} is a folder, so the output must be a folder, got {dst}")
        if os.path.isdir(dst) and os.path.samefile(src, dst):
            raise UserError(f"the output folder must differ from the input folder {src}")
        jobs = [(f, os.path.join(dst, name(f))) for f in list_images(src)]
    else:
        if os.path.isdir(dst) or dst.endswith(os.sep) or not os.path.splitext(dst)[1]:
            dst = os.path.join(dst, name(src))
        jobs = [(src, dst)]
    for s, d in jobs:
        output_format(d)
        if os.path.exists(d) and os.path.samefile(s, d):
            raise UserError(f"refusing to overwrite the input {s} with its own output")
    return jobs
