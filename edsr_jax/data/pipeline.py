"""Training batches and evaluation samples: random aligned crops and flips, the host pipeline.

Batches are numpy dicts ``{"lr": uint8 (b, p, p, 3), "hr": uint8 (b, p*s, p*s, 3), "scale": int}``
with values in [0, 255] (the models take float in [0, 255]: cast on the device). ``b`` is this
process's share of ``config.batch_size``.

**Determinism and resume.** The batch at global step ``k`` is a pure function of
``(config.seed, k, process_index, process_count)`` and the images; it does not depend on the
iterator's history. Resuming at step ``k`` is ``create_train_iterator(config, start_step=k)``: the
resumed run sees exactly the batches an uninterrupted run would. No iterator state is saved.

How a batch is drawn (numpy, on cached decoded images, see :mod:`edsr_jax.data.sources`):

1. MDSR: the scale of step ``k`` is drawn from ``(seed, k)`` only, so every process agrees.
2. Image schedule: this process's patch number ``g = k * b + j`` belongs to block
   ``g // patches_per_image``; blocks walk through a fresh permutation of this process's images
   every pass (permutation keyed by ``(seed, pass, process)``). Each image thus gives
   ``patches_per_image`` crops per pass, and every image is visited once per pass.
3. Each patch: a uniformly random LR position, the aligned HR window (LR pixel (y, x) covers HR
   pixels from (y*s, x*s)), then the three independent coin flips of the paper (flip W, flip H,
   transpose), applied identically to LR and HR. With ``flat_patch_threshold > 0`` a position
   whose LR patch has a standard deviation below the threshold (grey levels) is redrawn, up to
   :data:`FLAT_PATCH_RETRIES` times. All randomness comes from ``(seed, k, process)``.

The numpy sampler runs inside a tf.data pipeline (``Dataset.range(start_step, ...)`` mapped with
``tf.numpy_function``, ordered parallel map, prefetch), the same path for every source.
TensorFlow is imported only when a training iterator is created. This module uses no JAX: the
caller (``edsr_jax.train``) says which process it is and puts the batches on the devices
(:func:`edsr_jax.sharding.prefetch_to_device`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

from edsr_jax.data import sources
from edsr_jax.data.benchmarks import Sample
from edsr_jax.errors import UserError

# Independent random streams derived from the same seed.
_STREAM_SCALE, _STREAM_ORDER, _STREAM_CROP = 1, 2, 3
# How often a nearly flat patch is redrawn before it is accepted anyway.
FLAT_PATCH_RETRIES = 8
# Steps the tf.data range runs to (effectively endless).
MAX_STEPS = 2**62
# Parallel calls of the numpy sampler inside tf.data (ordered, so the order stays deterministic).
NUM_PARALLEL_CALLS = 2


def _rng(*key: int) -> np.random.Generator:
    """A numpy Generator that depends only on the integer ``key``."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def local_batch_size(global_batch: int, process_count: int) -> int:
    """This process's share of the global batch.

    Raises:
        UserError: the global batch is not divisible by the process count.
    """
    if global_batch <= 0 or global_batch % process_count:
        raise UserError(
            f"config.batch_size={global_batch} must be a positive multiple of the process count "
            f"{process_count}"
        )
    return global_batch // process_count


def batch_scale(seed: int, step: int, scales: Sequence[int]) -> int:
    """The scale of global step ``step``: drawn from ``(seed, step)`` only (same on every process)."""
    if len(scales) == 1:
        return int(scales[0])
    return int(scales[_rng(seed, step, _STREAM_SCALE).integers(len(scales))])


@functools.lru_cache(maxsize=16)
def _pass_order(seed: int, epoch: int, process_index: int, process_count: int, n: int) -> np.ndarray:
    """The permutation of this process's ``n`` images for pass ``epoch``."""
    return _rng(seed, epoch, process_index, process_count, _STREAM_ORDER).permutation(n)


def image_schedule(
    seed: int,
    step: int,
    batch: int,
    n_images: int,
    patches_per_image: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """Index (into this process's images) of each of the ``batch`` patches of step ``step``.

    Args:
        seed: the run's seed.
        step: global step.
        batch: this process's batch size.
        n_images: number of images this process holds.
        patches_per_image: crops taken from an image per pass over the images.
        process_index: this process.
        process_count: number of processes.

    Returns:
        int array (batch,).
    """
    block = (step * batch + np.arange(batch)) // patches_per_image
    epoch, position = np.divmod(block, n_images)
    out = np.empty(batch, np.int64)
    for e in np.unique(epoch):
        order = _pass_order(seed, int(e), process_index, process_count, n_images)
        out[epoch == e] = order[position[epoch == e]]
    return out


def crop_pair(lr: np.ndarray, hr: np.ndarray, y: int, x: int, patch: int, scale: int):
    """The aligned LR patch at (y, x) (LR pixels) and its HR window; both are views.

    Returns:
        (lr[y:y+patch, x:x+patch], hr[y*s:(y+patch)*s, x*s:(x+patch)*s]).
    """
    hp = patch * scale
    return lr[y : y + patch, x : x + patch], hr[y * scale : y * scale + hp, x * scale : x * scale + hp]


def augment_pair(lr: np.ndarray, hr: np.ndarray, flip_w: bool, flip_h: bool, transpose: bool):
    """Applies flip W, then flip H, then the H/W transpose identically to both (views, no copy)."""
    if flip_w:
        lr, hr = lr[:, ::-1], hr[:, ::-1]
    if flip_h:
        lr, hr = lr[::-1], hr[::-1]
    if transpose:
        lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
    return lr, hr


@functools.lru_cache(maxsize=64)
def _gather_index(size: int, flip_w: bool, flip_h: bool, transpose: bool) -> np.ndarray:
    """Flat source index of each byte of an augmented contiguous (size, size, 3) patch."""
    grid = np.arange(size * size * 3, dtype=np.intp).reshape(size, size, 3)
    return np.ascontiguousarray(augment_pair(grid, grid, flip_w, flip_h, transpose)[0]).reshape(-1)


def write_augmented(out: np.ndarray, patch: np.ndarray, flip_w: bool, flip_h: bool, transpose: bool) -> None:
    """``out[...] = augment_pair(patch, ...)`` for a square patch, fast.

    numpy copies a W-flipped or transposed (H, W, 3) uint8 view pixel by pixel (3-byte inner
    loops), 3-6x slower than one ``np.take`` with a precomputed index; a plain or H-flipped view
    copies whole rows.
    """
    if not (flip_w or transpose):
        out[...] = patch[::-1] if flip_h else patch
        return
    index = _gather_index(patch.shape[0], bool(flip_w), bool(flip_h), bool(transpose))
    np.take(np.ascontiguousarray(patch).reshape(-1), index, out=out.reshape(-1))


def sample_batch(
    pairs: sources.ImagePairs,
    *,
    seed: int,
    step: int,
    batch: int,
    patch: int,
    scale: int,
    patches_per_image: int,
    flat_patch_threshold: float = 0.0,
    process_index: int = 0,
    process_count: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(lr, hr)`` uint8 patches of step ``step`` for this process (pure function of its args).

    Args:
        pairs: this process's decoded images (with LR images for ``scale``).
        seed: the run's seed.
        step: global step.
        batch: this process's batch size.
        patch: LR patch side; the HR patch side is ``patch * scale``.
        scale: this step's scale.
        patches_per_image: crops per image per pass.
        flat_patch_threshold: redraw patches whose LR standard deviation is below it (0: never).
        process_index: this process.
        process_count: number of processes.

    Returns:
        lr uint8 (batch, patch, patch, 3) and hr uint8 (batch, patch*scale, patch*scale, 3).
    """
    images = image_schedule(seed, step, batch, len(pairs), patches_per_image, process_index, process_count)
    rng = _rng(seed, step, process_index, process_count, _STREAM_CROP)
    positions = rng.random((batch, FLAT_PATCH_RETRIES + 1, 2))
    flips = rng.random((batch, 3)) < 0.5
    lr_out = np.empty((batch, patch, patch, 3), np.uint8)
    hr_out = np.empty((batch, patch * scale, patch * scale, 3), np.uint8)
    lrs = pairs.lr[scale]
    for j, i in enumerate(images):
        lr_img, hr_img = lrs[i], pairs.hr[i]
        room = np.array(lr_img.shape[:2]) - patch + 1
        for attempt in range(FLAT_PATCH_RETRIES + 1):
            y, x = (positions[j, attempt] * room).astype(np.int64)
            lr, hr = crop_pair(lr_img, hr_img, y, x, patch, scale)
            if flat_patch_threshold <= 0 or lr.std() >= flat_patch_threshold:
                break
        write_augmented(lr_out[j], lr, *flips[j])
        write_augmented(hr_out[j], hr, *flips[j])
    return lr_out, hr_out


def _import_tf():
    """TensorFlow, kept off any accelerator (it only runs the input pipeline)."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised; tensorflow-cpu has no GPU anyway
        pass
    return tf


def make_dataset(sample_step, start_step: int, prefetch: int, num_parallel_calls: int | None = None):
    """tf.data pipeline over steps ``start_step, start_step + 1, ...`` of a numpy step sampler.

    Args:
        sample_step: ``step (np.int64) -> (lr uint8, hr uint8, scale int64)``.
        start_step: the first step.
        prefetch: batches tf.data keeps ready.
        num_parallel_calls: sampler calls running at once (default :data:`NUM_PARALLEL_CALLS`);
            the output order stays by step.

    Returns:
        A ``tf.data.Dataset`` of dicts {"lr", "hr", "scale"}.
    """
    tf = _import_tf()

    @tf.autograph.experimental.do_not_convert
    def to_batch(step):
        lr, hr, scale = tf.numpy_function(sample_step, [step], (tf.uint8, tf.uint8, tf.int64), stateful=False)
        lr.set_shape((None, None, None, 3))
        hr.set_shape((None, None, None, 3))
        return {"lr": lr, "hr": hr, "scale": scale}

    ds = tf.data.Dataset.range(start_step, MAX_STEPS)
    parallel = NUM_PARALLEL_CALLS if num_parallel_calls is None else num_parallel_calls
    ds = ds.map(to_batch, num_parallel_calls=parallel, deterministic=True)
    return ds.prefetch(prefetch)


def create_train_iterator(
    config, *, start_step: int = 0, process_index: int = 0, process_count: int = 1
) -> Iterator[dict]:
    """Endless iterator of this process's training batches, starting at global step ``start_step``.

    Args:
        config: ConfigDict with seed, batch_size (global), patch_size (LR), scales and data.*
            (source, tfds_name, data_dir, degradation, train_range, cache_dir, patches_per_image,
            skip_small, flat_patch_threshold, prefetch).
        start_step: global step of the first batch (resume: the step to continue from).
        process_index: this process (``jax.process_index()`` in a multi-process run).
        process_count: number of processes (``jax.process_count()``).

    Returns:
        Iterator of {"lr": uint8 (b, p, p, 3), "hr": uint8 (b, p*s, p*s, 3), "scale": int}, values
        in [0, 255], ``b = config.batch_size // process_count``; the batch at step k depends only
        on (seed, k, process_index, process_count).

    Raises:
        UserError: bad batch size, patch size or ranges; missing or too-small images.
    """
    index, count = int(process_index), int(process_count)
    batch = local_batch_size(config.batch_size, count)
    patch, scales, data = int(config.patch_size), tuple(int(s) for s in config.scales), config.data
    if patch <= 0 or data.patches_per_image <= 0 or not scales:
        raise UserError(
            f"need patch_size > 0, patches_per_image > 0 and scales, got {patch}, "
            f"{data.patches_per_image}, {scales}"
        )
    pairs = sources.load_pairs(data, "train", scales, patch, index, count)
    if not len(pairs):
        raise UserError(
            f"no training image of source {data.source!r} is at least {patch}x{patch} at every scale"
        )
    sample = functools.partial(
        sample_batch,
        pairs,
        seed=config.seed,
        batch=batch,
        patch=patch,
        patches_per_image=data.patches_per_image,
        flat_patch_threshold=data.flat_patch_threshold,
        process_index=index,
        process_count=count,
    )

    def sample_step(step):
        scale = batch_scale(config.seed, int(step), scales)
        lr, hr = sample(step=int(step), scale=scale)
        return lr, hr, np.int64(scale)

    try:
        ds = make_dataset(sample_step, int(start_step), data.prefetch)
    except ImportError as e:  # e.g. a GPU machine with JAX only: the same batches, without tf.data
        if not _WARNED_NO_TF:
            _WARNED_NO_TF.append(True)
            warnings.warn(
                f"input pipeline without tf.data ({e}): Python threads sample the batches", stacklevel=2
            )
        batches = thread_batches(sample_step, int(start_step), data.prefetch)
        return ({"lr": lr, "hr": hr, "scale": int(scale)} for lr, hr, scale in batches)
    return ({"lr": b["lr"], "hr": b["hr"], "scale": int(b["scale"])} for b in ds.as_numpy_iterator())


_WARNED_NO_TF: list[bool] = []  # (the fallback warns once per process)


def thread_batches(sample_step, start_step: int, prefetch: int, num_threads: int = NUM_PARALLEL_CALLS):
    """What :func:`make_dataset` yields, without TensorFlow: ``sample_step(k)`` for k = start_step...

    ``num_threads`` threads sample ahead (numpy releases the GIL while copying), up to
    ``prefetch + num_threads`` steps; the output stays in step order.
    """
    with concurrent.futures.ThreadPoolExecutor(max(1, num_threads), "edsr-batches") as pool:
        pending = collections.deque()
        step = start_step
        while True:
            while len(pending) < max(1, prefetch) + num_threads:
                pending.append(pool.submit(sample_step, np.int64(step)))
                step += 1
            yield pending.popleft().result()


def create_eval_samples(config, split: str = "val") -> dict[int, list[Sample]]:
    """Whole evaluation images per scale: DIV2K validation images, or the held-out photographs.

    Every process gets all images. HR images are cropped (top-left) to LR size times the scale.

    Args:
        config: ConfigDict with scales and data.* (source, data_dir, val_range, ...).
        split: "val" (config.data.val_range, or :data:`sources.SKIMAGE_VAL`) or "train".

    Returns:
        scale -> list of :class:`~edsr_jax.data.benchmarks.Sample` (lr uint8 (h, w, 3), hr uint8
        (h*s, w*s, 3)).
    """
    scales = tuple(int(s) for s in config.scales)
    pairs = sources.load_pairs(config.data, split, scales, min_lr=1)
    return {
        s: [
            Sample(name=name, lr=lr, hr=np.ascontiguousarray(hr[: lr.shape[0] * s, : lr.shape[1] * s]))
            for name, lr, hr in zip(pairs.names, pairs.lr[s], pairs.hr, strict=True)
        ]
        for s in scales
    }
