"""Image files: the one reader, the one writer, the one extension list and folder lister.

Reading is two steps so that callers can choose what to do with unusual modes:
:func:`load_raw` opens and fully decodes a file and reports its Pillow mode; :func:`to_rgb_uint8`
turns that into the RGB uint8 array that training, evaluation and downscaling work on.
:func:`read_image` does both. :func:`write_image` encodes in memory and writes atomically
(:mod:`edsr_jax.atomic`), so an interrupted run never leaves a half-written image under the final
name. :func:`plan_outputs` maps a file or folder argument to ``(input, output)`` file pairs.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
import zlib
from collections.abc import Callable

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
    """A decoded image as Pillow gave it.

    Attributes:
      array: the pixels, HxW or HxWxC, in the mode's natural dtype (uint8, uint16, int32, float32);
        palette images keep their indices (see ``palette``).
      mode: Pillow's mode string (``"RGB"``, ``"L"``, ``"RGBA"``, ``"P"``, ``"I;16"``, ...).
      path: the file it came from.
      palette: for mode ``"P"``, the palette as a (256, 3) uint8 array; otherwise None.
    """

    array: np.ndarray
    mode: str
    path: str
    palette: np.ndarray | None = None


def _pixel_limit(image_module) -> int | None:
    """Pillow's decompression-bomb limit for this read: :data:`MAX_PIXELS_ENV` if set, else Pillow's."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return image_module.MAX_IMAGE_PIXELS
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{MAX_PIXELS_ENV} must be a number of pixels, got {value!r}") from None


def load_raw(path: str) -> RawImage:
    """Open and fully decode an image file.

    Args:
      path: the image file.

    Returns:
      The decoded :class:`RawImage`.

    Raises:
      UserError: the file is missing, empty, truncated or not an image Pillow can read.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"image file not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"expected an image file, got a folder: {path}")
    if os.path.getsize(path) == 0:
        raise UserError(f"image file is empty (0 bytes): {path}")
    limit, pillows = _pixel_limit(Image), Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit  # (for this read only: restored below)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # over the limit: refuse
            with Image.open(path) as img:
                img.load()
                mode = img.mode
                palette = None
                if mode == "P":
                    pal = np.asarray(img.getpalette("RGB") or [], np.uint8)
                    palette = np.zeros((256, 3), np.uint8)
                    palette[: len(pal) // 3] = pal.reshape(-1, 3)
                    img = img.copy()
                array = np.array(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UserError(
            f"image {path} is larger than the limit of {limit:,} pixels (Pillow's "
            f"decompression-bomb guard: {e}); if you trust the file, raise the limit with the "
            f"environment variable {MAX_PIXELS_ENV}=<pixels>"
        ) from None
    except UnidentifiedImageError:
        raise UserError(f"not an image file (or a format Pillow cannot read): {path}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot decode image {path}: {e}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillows
    return RawImage(array=array, mode=mode, path=path, palette=palette)


def to_rgb_uint8(raw: RawImage) -> np.ndarray:
    """An HxWx3 uint8 RGB array from a :class:`RawImage`.

    Grayscale is replicated to 3 channels; palette images are expanded; alpha is dropped (as the
    official EDSR code does); 16-bit and 32-bit grayscale are scaled to 8 bits with rounding.

    Args:
      raw: output of :func:`load_raw`.

    Returns:
      uint8 array of shape (H, W, 3).

    Raises:
      UserError: a mode this conversion does not handle.
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
    """Read an image file as RGB uint8 (H, W, 3); grayscale is replicated to 3 channels.

    Raises:
      UserError: missing, empty, truncated or unreadable file, or an unsupported mode.
    """
    return to_rgb_uint8(load_raw(path))


def output_format(path: str) -> str:
    """Pillow's format name for an output path's extension.

    Raises:
      UserError: an extension Pillow cannot write.
    """
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
    """Writes a uint8 image atomically (encoded in memory, then :func:`edsr_jax.atomic.write_bytes`).

    Args:
      path: destination; the format comes from the extension (``.png`` recommended: lossless).
      array: uint8, HxW (gray), HxWx2 (gray + alpha), HxWx3 (RGB) or HxWx4 (RGBA).

    Raises:
      UserError: a bad array, an unknown extension, or a folder that does not exist.
      OSError: the write itself failed (no partial file is left).
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
    """A PNG written in blocks of rows (``array`` may be memory-mapped): memory stays a few rows.

    8 bits per channel, the "Sub" filter on every row, zlib at level 6; written to a temporary
    name beside ``path`` and renamed, as :func:`edsr_jax.atomic.write_bytes` does.
    """
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]  # gray, gray + alpha, RGB, RGBA
    rows = max(1, STREAM_BYTES // 8 // max(1, w * channels))
    compressor = zlib.compressobj(6)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(
                b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            )
            for y in range(0, h, rows):
                block = np.asarray(array[y : y + rows]).reshape(-1, w * channels)
                filtered = block.copy()
                filtered[:, channels:] -= block[:, :-channels]  # Sub: each byte minus the one a pixel left
                lines = np.concatenate([np.ones((len(block), 1), np.uint8), filtered], axis=1)
                data = compressor.compress(lines.tobytes())
                if data:
                    f.write(_png_chunk(b"IDAT", data))
            f.write(_png_chunk(b"IDAT", compressor.flush()) + _png_chunk(b"IEND", b""))
        os.chmod(tmp, 0o666 & ~atomic.umask())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise atomic.naming(e, path) from None
        raise


def is_image_name(name: str) -> bool:
    """Whether a file name has one of :data:`IMAGE_EXTENSIONS` (any case) and is not hidden."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_images(folder: str) -> list[str]:
    """Image files (by extension) directly in ``folder``, sorted by name; hidden files skipped.

    Raises:
      UserError: ``folder`` does not exist, is not a folder, or holds no image files.
    """
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.isfile(folder) else "does not exist"
        raise UserError(f"image folder {folder} {what}")
    names = sorted(n for n in os.listdir(folder) if is_image_name(n))
    files = [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
    if not files:
        raise UserError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files


def plan_outputs(src: str, dst: str, name: Callable[[str], str] = os.path.basename) -> list[tuple[str, str]]:
    """``[(input file, output file)]`` for a file or folder ``src`` and an output ``dst``.

    A folder's images (by extension, not recursive) go into the folder ``dst`` as ``name(file)``.
    A file goes to ``dst``, or into it as ``name(file)`` when ``dst`` is a folder, ends with a path
    separator or has no extension. Outputs are checked before any work: a known image extension,
    and never the input itself.

    Args:
      src: an image file or a folder of images.
      dst: the output file or folder.
      name: the output file name of an input path (default: the same name).

    Raises:
      UserError: a missing input, a folder without images, a folder written to a file name, an
        output folder equal to the input folder, an unknown output extension, or an output that
        is the input file.
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
