"""Image files and folders for tests: PNGs, DIV2K layouts with exactly aligned pairs, Set5 copies."""

import math
import os
import shutil

import numpy as np
from PIL import Image


def nearest_up(low_res, s):
    """HR whose s x s blocks repeat the LR pixel: every aligned transform keeps hr == nearest_up(low_res)."""
    return np.repeat(np.repeat(low_res, s, axis=-3), s, axis=-2)


def write_png(path, image):
    """Writes ``image`` to ``path`` (its folder is created)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path)


def make_div2k(root, numbers, lr_hw=(20, 28), scales=(2,), image_id_channel=False, seed=0):
    """DIV2K layout with random LR images and nearest-upsampled HR (exactly aligned by construction).

    With ``image_id_channel`` the blue channel holds the image number, to tell images apart.
    """
    rng = np.random.default_rng(seed)
    for n in numbers:
        part = "train" if n <= 800 else "valid"
        base = rng.integers(0, 256, (*lr_hw, 3), dtype=np.uint8)
        if image_id_channel:
            base[..., 2] = n
        # HR constant on lcm(scales) blocks, so HR == nearest_up(LR_s, s) for every scale s.
        hr = nearest_up(base, math.lcm(*scales))
        write_png(os.path.join(root, f"DIV2K_{part}_HR", f"{n:04d}.png"), hr)
        for s in scales:
            lr = hr[::s, ::s]
            write_png(os.path.join(root, f"DIV2K_{part}_LR_bicubic", f"X{s}", f"{n:04d}x{s}.png"), lr)
    return str(root)


def div2k_from_set5(set5_dir, root, with_lr):
    """Set5 in DIV2K layout: HR as 0001..0005.png, the real MATLAB x2 LR images if ``with_lr``."""
    names = sorted(os.listdir(os.path.join(set5_dir, "HR")))
    for i, name in enumerate(names, 1):
        os.makedirs(root / "DIV2K_train_HR", exist_ok=True)
        shutil.copy(os.path.join(set5_dir, "HR", name), root / "DIV2K_train_HR" / f"{i:04d}.png")
        if with_lr:
            os.makedirs(root / "DIV2K_train_LR_bicubic" / "X2", exist_ok=True)
            lr_name = name.replace(".png", "x2.png")
            shutil.copy(
                os.path.join(set5_dir, "LR_bicubic", "X2", lr_name),
                root / "DIV2K_train_LR_bicubic" / "X2" / f"{i:04d}x2.png",
            )
    return str(root)


def copy_hr(set5_dir, dest, names=("bird", "head")):
    """A benchmark set at ``dest`` holding only the HR images ``names`` of Set5 (no LR files)."""
    os.makedirs(os.path.join(dest, "HR"))
    for n in names:
        shutil.copy(os.path.join(set5_dir, "HR", f"{n}.png"), os.path.join(dest, "HR", f"{n}.png"))


def uint8_images(min_side: int = 1, max_side: int = 13, channels: int = 3):
    """A hypothesis strategy of random uint8 (H, W, channels) images with sides in [min_side, max_side]."""
    from hypothesis import strategies as st

    @st.composite
    def images(draw):
        h = draw(st.integers(min_side, max_side))
        w = draw(st.integers(min_side, max_side))
        seed = draw(st.integers(0, 2**16))
        return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)

    return images()
