"""Set5 Bicubic under several evaluation conventions: which one gives the paper's Bicubic row?

The paper's Table 3 prints Bicubic on Set5 as 33.66 / 0.9299, 30.39 / 0.8682, 28.42 / 0.8104
(x2 / x3 / x4); ``edsr-jax eval --method bicubic`` gives 33.67 / 0.9303, 30.40 / 0.8689,
28.43 / 0.8111. This prints PSNR and SSIM of the Set5 Bicubic baseline for

* the degradation: ``rgb-uint8`` (the MATLAB LR files, ``imresize(lr, s)`` on uint8 RGB, as
  ``edsr-jax eval``) or ``Y-double`` (Y of the HR rounded to an integer, then ``imresize`` down and
  up in double on Y alone, the result rounded to integers);
* Y in float or rounded to integers (MATLAB's ``rgb2ycbcr`` on uint8);
* SSIM as a mean over the positions where the 11x11 window fits (Wang et al.'s ``ssim_index``,
  edsr-jax) or over the whole image with replicated borders (MATLAB's built-in ``ssim``).

Shave ``s`` pixels, Gaussian window sigma 1.5, C1/C2 for the range 255, in every case.

    python experiments/tools/bicubic_protocols.py [--data-dir /work/shared/data/benchmarks]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from edsr_jax.imaging import files, metrics, resize

SET5 = ("baby", "bird", "butterfly", "head", "woman")
HALF = metrics.SSIM_WINDOW // 2


def y_channel(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of 0..255 RGB, in float."""
    rgb = rgb.astype(np.float64)
    return 16 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255


def gaussian_valid(x: np.ndarray) -> np.ndarray:
    """The separable 11x11 Gaussian over the positions where it fits."""
    g, k = metrics.gaussian_window(), metrics.SSIM_WINDOW
    rows = sum(g[i] * x[i : x.shape[0] - k + 1 + i] for i in range(k))
    return sum(g[i] * rows[:, i : x.shape[1] - k + 1 + i] for i in range(k))


def ssim(a: np.ndarray, b: np.ndarray, whole_image: bool) -> float:
    """SSIM of two 2-D arrays; ``whole_image``: replicated borders, every position averaged."""
    if whole_image:
        a, b = np.pad(a, HALF, mode="edge"), np.pad(b, HALF, mode="edge")
    c1, c2 = (metrics.SSIM_K1 * 255) ** 2, (metrics.SSIM_K2 * 255) ** 2
    ma, mb = gaussian_valid(a), gaussian_valid(b)
    va, vb = gaussian_valid(a * a) - ma**2, gaussian_valid(b * b) - mb**2
    cov = gaussian_valid(a * b) - ma * mb
    return float(np.mean((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2))))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a - b) ** 2)))


def variants(hr: np.ndarray, lr: np.ndarray, s: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{name: (bicubic Y, HR Y)}`` of one image, before the shave."""
    y_hr = y_channel(hr)
    y_sr = y_channel(resize.imresize(lr, s))
    y_double = resize.imresize(resize.imresize(np.round(y_hr) / 255, 1 / s), s) * 255
    return {
        "rgb-uint8, Y float": (y_sr, y_hr),
        "rgb-uint8, Y rounded": (np.round(y_sr), np.round(y_hr)),
        "Y-double, rounded": (np.clip(np.round(y_double), 0, 255), np.round(y_hr)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", default="/work/shared/data/benchmarks", help="holds Set5/HR, Set5/LR_bicubic"
    )
    args = parser.parse_args(argv)
    print("scale  degradation, Y             SSIM mean over       PSNR     SSIM")
    for s in (2, 3, 4):
        scores: dict[tuple[str, bool], list] = {}
        for name in SET5:
            hr = resize.modcrop(files.read_image(os.path.join(args.data_dir, "Set5", "HR", f"{name}.png")), s)
            lr = files.read_image(
                os.path.join(args.data_dir, "Set5", "LR_bicubic", f"X{s}", f"{name}x{s}.png")
            )
            for key, (a, b) in variants(hr, lr, s).items():
                a, b = a[s:-s, s:-s], b[s:-s, s:-s]
                for whole in (False, True):
                    scores.setdefault((key, whole), []).append((psnr(a, b), ssim(a, b, whole)))
        for (key, whole), values in scores.items():
            p, q = np.mean(values, axis=0)
            where = "whole image" if whole else "valid window"
            print(f"x{s}     {key:26s} {where:18s} {p:7.4f}  {q:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
