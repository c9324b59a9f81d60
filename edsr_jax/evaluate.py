"""The evaluation loop: dataset x scale -> per-image and mean PSNR/SSIM with the paper's protocol.

Used by ``edsr-jax eval``, by validation during training and by the demo. An "upscale function"
maps an LR uint8 (h, w, 3) image to its (h * s, w * s, 3) super-resolution in [0, 255] (any
float or uint8 dtype; it is quantised before scoring, see :mod:`edsr_jax.metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from edsr_jax import benchmarks, image, metrics
from edsr_jax.errors import UserError

UpscaleFn = Callable[[np.ndarray], np.ndarray]


def bicubic(scale: int, *, boundary: str = "replicate") -> UpscaleFn:
    """The paper's Bicubic row: MATLAB bicubic upscaling of the LR, ``imresize(lr, scale)`` (uint8)."""

    def upscale(lr: np.ndarray) -> np.ndarray:
        return image.imresize(lr, scale, boundary=boundary)

    return upscale


def evaluate_images(
    upscale_fn: UpscaleFn,
    samples: Sequence[benchmarks.Sample],
    *,
    scale: int,
    protocol: metrics.Protocol = metrics.BENCHMARK,
    progress: Callable[[], None] | None = None,
) -> dict:
    """Upscale every sample's LR and score it against its HR.

    Args:
      upscale_fn: LR uint8 (h, w, 3) -> SR (h * scale, w * scale, 3) in [0, 255].
      samples: pairs from :func:`edsr_jax.benchmarks.load_benchmark` (or anything with ``name``,
        ``lr`` and ``hr``).
      scale: the upscaling factor (sets the shave).
      protocol: :data:`metrics.BENCHMARK` (Y, shave = scale) or :data:`metrics.DIV2K` (RGB,
        shave = scale + 6).
      progress: called once after each image (e.g. a progress bar's ``update``).

    Returns:
      ``{"psnr": mean, "ssim": mean, "seconds": time spent in upscale_fn, "images": [{"name",
      "psnr", "ssim"}, ...]}``; means are over images.

    Raises:
      UserError: no samples, or an SR output of the wrong shape.
    """
    if not samples:
        raise UserError("nothing to evaluate: the sample list is empty")
    images, seconds = [], 0.0
    for sample in samples:
        start = time.perf_counter()
        sr = np.asarray(upscale_fn(sample.lr))
        seconds += time.perf_counter() - start
        if sr.shape != sample.hr.shape:
            raise UserError(
                f"{sample.name}: the upscaler returned shape {sr.shape}, expected {sample.hr.shape} "
                f"(LR {sample.lr.shape} x{scale})"
            )
        p, s = metrics.evaluate_pair(sr, sample.hr, scale=scale, protocol=protocol)
        images.append({"name": sample.name, "psnr": p, "ssim": s})
        if progress is not None:
            progress()
    return {
        "psnr": float(np.mean([i["psnr"] for i in images])),
        "ssim": float(np.mean([i["ssim"] for i in images])),
        "seconds": seconds,
        "images": images,
    }


def evaluate_sets(
    upscaler_for_scale: Callable[[int], UpscaleFn],
    data_dir: str,
    datasets: Sequence[str],
    scales: Sequence[int],
    *,
    protocol: metrics.Protocol | None = None,
    boundary: str = "replicate",
    progress_factory: Callable[[int], Callable[[], None]] | None = None,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Evaluate every (dataset, scale) from local folders in the EDSR layout.

    Every set's folder is checked first, so that a missing set fails before any computation; the
    images are loaded one (dataset, scale) at a time.

    Args:
      upscaler_for_scale: ``scale -> upscale_fn`` (called once per scale).
      data_dir: the folder holding the sets.
      datasets: set names (folder names), e.g. ``["Set5", "Set14"]``.
      scales: upscaling factors.
      protocol: one protocol for all sets; None picks per set (DIV2K* -> RGB, others -> Y).
      boundary: how missing LR files are generated (see :func:`benchmarks.load_benchmark`).
      progress_factory: given the total image count, returns a per-image callback.
      on_result: called with each result dict as soon as it is complete.

    Returns:
      One dict per (dataset, scale) in order: ``{"dataset", "scale", "protocol", "psnr", "ssim",
      "seconds", "images"}``.

    Raises:
      UserError: a missing or empty set, or an unreadable image.
    """
    counts = {name: len(benchmarks.hr_files(data_dir, name)) for name in datasets}  # fail fast
    progress = progress_factory(sum(counts.values()) * len(scales)) if progress_factory else None
    results = []
    for s in scales:
        upscale_fn = upscaler_for_scale(s)
        for name in datasets:
            samples = benchmarks.load_benchmark(data_dir, name, s, boundary=boundary)
            proto = protocol or metrics.protocol_for_dataset(name)
            res = evaluate_images(upscale_fn, samples, scale=s, protocol=proto, progress=progress)
            res = {"dataset": name, "scale": int(s), "protocol": proto.name, **res}
            results.append(res)
            if on_result is not None:
                on_result(res)
    return results


def format_table(results: Sequence[dict]) -> str:
    """A plain-text table: dataset, scale, PSNR, SSIM, images, seconds."""
    lines = [f"{'dataset':<12} {'scale':>5} {'PSNR':>8} {'SSIM':>7} {'images':>6} {'seconds':>8}"]
    for r in results:
        lines.append(
            f"{r['dataset']:<12} {'x' + str(r['scale']):>5} {r['psnr']:>8.2f} {r['ssim']:>7.4f} "
            f"{len(r['images']):>6d} {r['seconds']:>8.1f}"
        )
    return "\n".join(lines)
