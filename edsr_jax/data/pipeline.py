"""Training batches as the paper draws them, the same on any topology, through Grain; eval samples.

Step k's global batch is a pure function of ``(config.seed, k)``, drawn for all rows at once: any
process x device split sees the same batches, and resuming is ``start_step=k`` (no iterator
state). Batches are uint8 numpy; how rows are drawn: ``docs/input_pipeline.md``.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from edsr_jax.data import benchmarks, cache, sources
from edsr_jax.data.benchmarks import Sample
from edsr_jax.errors import UserError

# Independent random streams derived from the same seed.
_STREAM_SCALE, _STREAM_ORDER, _STREAM_CROP = 1, 2, 3
# How often a nearly flat patch is redrawn before it is accepted anyway.
FLAT_PATCH_RETRIES = 8
# The step range the pipeline runs over (effectively endless).
MAX_STEPS = 2**62
# Threads that build batches when config.data.threads is 0 (auto), at most.
MAX_AUTO_THREADS = 16
# The sampler's version, stored in checkpoints: batches of one version are reproducible.
SAMPLER = "global-v1"

# What ``config.data.skip_small`` may say about images smaller than a patch.
SKIP_SMALL = ("error", "skip")


def _rng(*key: int) -> np.random.Generator:
    """A numpy Generator that depends only on the integer ``key``."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def batch_scale(seed: int, step: int, scales: Sequence[int]) -> int:
    """The scale of global step ``step``: drawn from ``(seed, step)`` only."""
    if len(scales) == 1:
        return int(scales[0])
    return int(scales[_rng(seed, step, _STREAM_SCALE).integers(len(scales))])


@functools.lru_cache(maxsize=16)
def _pass_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The permutation of the ``n`` images for pass ``epoch``."""
    return _rng(seed, epoch, _STREAM_ORDER).permutation(n)


def image_schedule(seed: int, step: int, batch: int, n_images: int) -> np.ndarray:
    """Image of each row of step ``step``: consecutive images of a per-pass permutation (``drop_last``)."""
    if n_images >= batch:
        per_pass = n_images // batch
        epoch, k = divmod(step, per_pass)
        return _pass_order(seed, epoch, n_images)[k * batch : (k + 1) * batch].astype(np.int64)
    epoch, position = np.divmod(step * batch + np.arange(batch), n_images)
    out = np.empty(batch, np.int64)
    for e in np.unique(epoch):
        out[epoch == e] = _pass_order(seed, int(e), n_images)[position[epoch == e]]
    return out


def crop_pair(low_res: np.ndarray, high_res: np.ndarray, y: int, x: int, patch: int, scale: int):
    """Views of the LR patch at LR pixel (y, x) and its aligned HR window."""
    hp = patch * scale
    return low_res[y : y + patch, x : x + patch], high_res[
        y * scale : y * scale + hp, x * scale : x * scale + hp
    ]


def augment_pair(low_res: np.ndarray, high_res: np.ndarray, flip_w: bool, flip_h: bool, transpose: bool):
    """Applies flip W, then flip H, then the H/W transpose identically to both (views, no copy)."""
    if flip_w:
        low_res, high_res = low_res[:, ::-1], high_res[:, ::-1]
    if flip_h:
        low_res, high_res = low_res[::-1], high_res[::-1]
    if transpose:
        low_res, high_res = low_res.transpose(1, 0, 2), high_res.transpose(1, 0, 2)
    return low_res, high_res


@functools.lru_cache(maxsize=64)
def _gather_index(size: int, flip_w: bool, flip_h: bool, transpose: bool) -> np.ndarray:
    """Flat source index of each byte of an augmented contiguous (size, size, 3) patch."""
    grid = np.arange(size * size * 3, dtype=np.intp).reshape(size, size, 3)
    return np.ascontiguousarray(augment_pair(grid, grid, flip_w, flip_h, transpose)[0]).reshape(-1)


def write_augmented(out: np.ndarray, patch: np.ndarray, flip_w: bool, flip_h: bool, transpose: bool) -> None:
    """``out[...] = augment_pair(patch, ...)`` for a square patch, fast.

    numpy copies W-flipped or transposed uint8 views pixel by pixel; one ``np.take`` with a cached
    index is much faster (RESULTS.md "Input pipeline").
    """
    if not (flip_w or transpose):
        out[...] = patch[::-1] if flip_h else patch
        return
    index = _gather_index(patch.shape[0], bool(flip_w), bool(flip_h), bool(transpose))
    np.take(np.ascontiguousarray(patch).reshape(-1), index, out=out.reshape(-1))


def sample_rows(
    pairs: cache.PairCache,
    *,
    seed: int,
    step: int,
    batch: int,
    rows: tuple[int, int],
    patch: int,
    scale: int,
    flat_patch_threshold: float = 0.0,
    images: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """LR and HR uint8 patches of rows ``[rows[0], rows[1])`` of step ``step``'s global batch, drawn
    from ``images``; patches flatter than ``flat_patch_threshold`` are redrawn a few times.
    """
    start, stop = rows
    usable = np.arange(len(pairs)) if images is None else np.asarray(images)
    chosen = usable[image_schedule(seed, step, batch, len(usable))[start:stop]]
    rng = _rng(seed, step, _STREAM_CROP)  # drawn for every row of the global batch
    positions = rng.random((batch, FLAT_PATCH_RETRIES + 1, 2))[start:stop]
    flips = (rng.random((batch, 3)) < 0.5)[start:stop]
    lr_out = np.empty((stop - start, patch, patch, 3), np.uint8)
    hr_out = np.empty((stop - start, patch * scale, patch * scale, 3), np.uint8)
    for j, i in enumerate(chosen):
        hr_img, lr_img = pairs.pair(int(i), scale)
        room = np.array(lr_img.shape[:2]) - patch + 1
        if min(room) < 1:
            raise UserError(
                f"{pairs.source.names[i]}: x{scale} LR image is {lr_img.shape[1]}x{lr_img.shape[0]}, "
                f"smaller than the {patch}x{patch} LR patch "
                "(set config.data.skip_small='skip' to leave such images out)"
            )
        for attempt in range(FLAT_PATCH_RETRIES + 1):
            y, x = (positions[j, attempt] * room).astype(np.int64)
            lr, hr = crop_pair(lr_img, hr_img, y, x, patch, scale)
            if flat_patch_threshold <= 0 or lr.std() >= flat_patch_threshold:
                break
        write_augmented(lr_out[j], lr, *flips[j])
        write_augmented(hr_out[j], hr, *flips[j])
    return lr_out, hr_out


def usable_images(
    source: sources.PairSource, scales: Sequence[int], patch: int, skip_small: str
) -> list[int] | None:
    """The images training may draw from: all (None), or those a patch large at every scale.

    ``"skip"`` reads every LR size and warns once naming those left out; ``"error"`` raises UserError
    for the first small one (sizes that need a decode are checked on first use).
    """
    if skip_small not in SKIP_SMALL:
        raise UserError(f"config.data.skip_small must be one of {SKIP_SMALL}, got {skip_small!r}")
    small = {}
    for i in range(len(source)):
        for s in scales:
            shape = source.lr_shape(i, s)
            if shape is None and skip_small == "skip":
                shape = source.read_lr(i, s).shape[:2]
            if shape is not None and min(shape) < patch:
                small[i] = f"{source.names[i]} (x{s} LR {shape[1]}x{shape[0]})"
                break
        if small and skip_small == "error":
            raise UserError(
                f"{next(iter(small.values()))} is smaller than the {patch}x{patch} LR patch "
                "(set config.data.skip_small='skip' to leave such images out)"
            )
    if not small:
        return None
    kept = [i for i in range(len(source)) if i not in small]
    if not kept:
        raise UserError(
            f"no training image is at least {patch}x{patch} LR pixels at every scale {tuple(scales)}"
        )
    warnings.warn(
        f"skipped {len(small)} images smaller than the {patch}x{patch} LR patch: {', '.join(small.values())}",
        stacklevel=2,
    )
    return kept


def host_threads(requested: int = 0) -> int:
    """Threads that build batches: ``requested``, or (0) the cores this process may use, 2..16."""
    if requested > 0:
        return int(requested)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    return max(2, min(MAX_AUTO_THREADS, cores))


def create_train_iterator(
    config, *, start_step: int = 0, rows: tuple[int, int] | None = None
) -> Iterator[dict]:
    """Endless iterator of uint8 ``{"lr", "hr", "scale"}`` batches from ``start_step``.

    ``rows`` is the half-open range of each global batch this process builds (default: all). Raises
    UserError for bad rows, patch size or ranges, or missing or too-small images.
    """
    import grain

    batch, patch = int(config.batch_size), int(config.patch_size)
    scales, data = tuple(int(s) for s in config.scales), config.data
    rows = (0, batch) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= rows[0] < rows[1] <= batch:
        raise UserError(f"rows must be a non-empty range inside [0, config.batch_size={batch}), got {rows}")
    if patch <= 0 or not scales:
        raise UserError(f"need config.patch_size > 0 and config.scales, got {patch} and {scales}")
    workers = int(data.workers)
    if workers > 0 and not data.cache_dir:
        raise UserError(
            f"config.data.workers={workers} needs config.data.cache_dir: each worker process would "
            "otherwise decode and hold its own copy of every image"
        )
    source = sources.open_source(data, "train", scales)
    images = usable_images(source, scales, patch, data.skip_small)
    pairs = cache.PairCache(source, data.cache_dir)
    seed = int(config.seed)
    threshold = float(data.flat_patch_threshold)

    def make_batch(step: int) -> dict:
        scale = batch_scale(seed, int(step), scales)
        lr, hr = sample_rows(
            pairs,
            seed=seed,
            step=int(step),
            batch=batch,
            rows=rows,
            patch=patch,
            scale=scale,
            flat_patch_threshold=threshold,
            images=images,
        )
        return {"low_res": lr, "high_res": hr, "scale": scale}

    dataset = grain.MapDataset.range(int(start_step), MAX_STEPS).map(make_batch)
    options = grain.ReadOptions(
        num_threads=host_threads(int(data.threads)), prefetch_buffer_size=max(1, int(data.prefetch))
    )
    iterable = dataset.to_iter_dataset(options)
    if workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; outside absl.app: defaults
            flags.FLAGS.mark_as_parsed()
        iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(iterable)


def create_eval_samples(config, split: str = "val", num_images: int = 0) -> dict[int, list[Sample]]:
    """Whole evaluation images per scale (DIV2K validation or held-out photographs), as ``Sample`` lists.

    Only the first ``num_images`` (0: all) of ``split`` are decoded; HR is cropped to LR x scale.
    """
    scales = tuple(int(s) for s in config.scales)
    source = sources.open_source(config.data, split, scales)
    pairs = cache.PairCache(source)  # (whole images, read once: no disk cache)
    count = len(source) if num_images <= 0 else min(int(num_images), len(source))
    out = {}
    for s in scales:
        out[s] = []
        for i in range(count):
            hr, lr = pairs.pair(i, s)
            out[s].append(benchmarks.make_sample(source.names[i], hr, lr, s))
    return out
