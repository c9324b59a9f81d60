"""Reading and writing image files with Pillow, with errors that name the file.

Reading is two steps so that callers can choose what to do with unusual modes:
:func:`load_raw` opens and fully decodes a file and reports its Pillow mode; :func:`to_rgb_uint8`
turns that into the RGB uint8 array that evaluation and downscaling work on. :func:`read_image`
does both. :func:`write_image` writes atomically (a temporary file in the same folder, then a
rename), so an interrupted run never leaves a half-written image under the final name.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile

import numpy as np

from edsr_jax.errors import UserError

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
    try:
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
    except UnidentifiedImageError:
        raise UserError(f"not an image file (or a format Pillow cannot read): {path}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot decode image {path}: {e}") from None
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


def _format_for(path: str) -> str:
    from PIL import Image

    ext = os.path.splitext(path)[1].lower()
    Image.init()
    if ext not in Image.EXTENSION:
        raise UserError(f"unknown image file extension {ext!r} for {path} (use e.g. .png)")
    return Image.EXTENSION[ext]


def write_image(path: str, array: np.ndarray) -> None:
    """Write a uint8 image atomically: to a temporary file in the same folder, then renamed.

    Args:
      path: destination; the format comes from the extension (``.png`` recommended: lossless).
      array: uint8, HxW (gray), HxWx2 (gray + alpha), HxWx3 (RGB) or HxWx4 (RGBA).

    Raises:
      UserError: a bad array, an unknown extension, or a folder that does not exist.
      OSError: the write itself failed.
    """
    from PIL import Image

    path = os.fspath(path)
    array = np.asarray(array)
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4))
    if array.dtype != np.uint8 or not shape_ok:
        raise UserError(f"write_image needs a uint8 HxW, HxWx2, HxWx3 or HxWx4 array, got {array.dtype} "
                        f"{tuple(array.shape)} for {path}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"output folder does not exist: {folder}")
    fmt = _format_for(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(array).save(f, format=fmt)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; use normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def list_images(folder: str) -> list[str]:
    """Image files (by extension) directly in ``folder``, sorted by name; hidden files skipped."""
    names = sorted(
        n for n in os.listdir(folder)
        if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
    )
    return [os.path.join(folder, n) for n in names if os.path.isfile(os.path.join(folder, n))]
