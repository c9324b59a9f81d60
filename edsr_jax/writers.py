"""Where training's numbers and pictures go: TensorBoard (clu) or the console, parameter tables,
image strips.

:func:`create_writer` returns clu's TensorBoard writer on process 0 and a :class:`ConsoleWriter`
(which writes nothing) elsewhere or when clu/TensorFlow are missing; training's console lines
are printed either way. :func:`summary_image` makes the ``[LR | bicubic | SR | HR]`` strips of
the validation images.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from edsr_jax import models
from edsr_jax.imaging import metrics, resize


class ConsoleWriter:
    """The writer interface training uses, writing nothing (the console lines remain)."""

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        del step, scalars

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        del step, images

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        del hparams

    def flush(self) -> None:
        pass


_WARNED_NO_CLU: list[bool] = []  # (a warning once per process, not once per run)


def create_writer(workdir: str, is_chief: bool, total: int, every: int) -> tuple[Any, Callable[[int], Any]]:
    """TensorBoard writer and steps/s reporter (clu) on process 0; console-only stand-ins elsewhere.

    Without clu or TensorFlow (e.g. a GPU machine with only JAX installed) training still runs:
    a one-time warning, no TensorBoard events, the console lines stay.

    Args:
      workdir: where the event files go.
      is_chief: whether this is process 0.
      total: the run's last step (for the progress reporter).
      every: steps between progress reports.

    Returns:
      ``(writer, report)``: ``report(step)`` is called after every step.
    """
    try:
        from clu import metric_writers, periodic_actions
    except ImportError as e:
        if is_chief and not _WARNED_NO_CLU:
            _WARNED_NO_CLU.append(True)
            warnings.warn(
                f"TensorBoard summaries are off: {e} (pip install clu tensorflow-cpu to get them); "
                "training continues with console logging only",
                stacklevel=2,
            )
        return ConsoleWriter(), lambda step: None
    if not is_chief:
        return ConsoleWriter(), lambda step: None
    writer = metric_writers.create_default_writer(workdir)
    report = periodic_actions.ReportProgress(
        num_train_steps=total, writer=writer, every_steps=every, every_secs=None
    )
    return writer, report


def parameter_overview(params: Any) -> str:
    """A table of the parameters (clu's overview, or names, shapes and sizes without clu)."""
    try:
        from clu import parameter_overview as overview
    except ImportError:
        rows = [
            f"{jax.tree_util.keystr(path)}  {tuple(leaf.shape)}  {int(np.prod(leaf.shape)):,}"
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
        ]
        return "\n".join([*rows, f"total {models.count_params(params):,}"])
    return overview.get_parameter_overview(params, include_stats=False)


def summary_image(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, scale: int, crop: int) -> np.ndarray:
    """One image strip ``[LR (nearest) | bicubic | SR | HR]`` of a central LR crop, uint8."""
    c = min(crop, *lr.shape[:2])
    y, x = (lr.shape[0] - c) // 2, (lr.shape[1] - c) // 2
    lr_c = lr[y : y + c, x : x + c]
    hr_window = (slice(y * scale, (y + c) * scale), slice(x * scale, (x + c) * scale))
    tiles = [
        np.repeat(np.repeat(lr_c, scale, 0), scale, 1),
        resize.imresize(lr_c, scale),
        metrics.quantize_uint8(sr[hr_window]),
        hr[hr_window],
    ]
    return np.concatenate(tiles, axis=1)
