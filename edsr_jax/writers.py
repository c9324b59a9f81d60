"""Where training's numbers and pictures go: TensorBoard event files (no TensorFlow), parameter
tables, image strips, and the console line's rate and ETA.
"""

from __future__ import annotations

import io
import itertools
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from etils import epath

from edsr_jax.imaging import metrics, resize

# Seconds between automatic flushes of the event file.
FLUSH_SECONDS = 30
_FILE_NUMBERS = itertools.count()  # distinct names within one second


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

    def close(self) -> None:
        pass


class TensorBoardWriter(ConsoleWriter):
    """TensorBoard event files in ``logdir`` (local or ``gs://``), framed with TensorBoard's own protos.

    Neither TensorFlow nor PyTorch is imported. Images are uint8 ``(H, W, 3)`` or a batch of one.
    """

    def __init__(self, logdir: str):
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        folder = epath.Path(logdir)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
        self._file = (folder / f"{name}.{next(_FILE_NUMBERS)}").open("wb")
        self._records = RecordWriter(self._file)
        self._flushed = time.monotonic()
        self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _add(self, event) -> None:
        self._records.write(event.SerializeToString())
        if time.monotonic() - self._flushed > FLUSH_SECONDS:
            self.flush()

    def _write(self, step: int, values: list) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=values)
        self._add(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        from tensorboard.compat.proto import summary_pb2

        values = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
        self._write(step, values)

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        from PIL import Image
        from tensorboard.compat.proto import summary_pb2

        values = []
        for key, value in images.items():
            image = np.asarray(value, np.uint8)
            image = image[0] if image.ndim == 4 else image
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="PNG")
            height, width = image.shape[:2]
            channels = 1 if image.ndim == 2 else image.shape[2]
            encoded = summary_pb2.Summary.Image(
                height=height, width=width, colorspace=channels, encoded_image_string=buffer.getvalue()
            )
            values.append(summary_pb2.Summary.Value(tag=key, image=encoded))
        self._write(step, values)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        from tensorboard.compat.proto import summary_pb2
        from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
        from tensorboard.plugins.hparams import metadata as hparams_metadata

        start = plugin_data_pb2.SessionStartInfo()
        for key, value in hparams.items():
            if isinstance(value, bool):
                start.hparams[key].bool_value = value
            elif isinstance(value, int | float):
                start.hparams[key].number_value = float(value)
            else:
                start.hparams[key].string_value = str(value)
        experiment = api_pb2.Experiment(hparam_infos=[api_pb2.HParamInfo(name=k) for k in hparams])
        contents = (
            (hparams_metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
            (
                hparams_metadata.SESSION_START_INFO_TAG,
                plugin_data_pb2.HParamsPluginData(session_start_info=start),
            ),
        )
        for tag, content in contents:
            plugin = summary_pb2.SummaryMetadata.PluginData(
                plugin_name=hparams_metadata.PLUGIN_NAME, content=content.SerializeToString()
            )
            metadata = summary_pb2.SummaryMetadata(plugin_data=plugin)
            self._write(0, [summary_pb2.Summary.Value(tag=tag, metadata=metadata)])

    def flush(self) -> None:
        self._records.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._records.close()


def create_writer(workdir: str, is_chief: bool) -> ConsoleWriter:
    """The TensorBoard writer of ``workdir`` on process 0, a :class:`ConsoleWriter` elsewhere."""
    return TensorBoardWriter(workdir) if is_chief else ConsoleWriter()


def format_duration(seconds: float) -> str:
    """``1h02m``, ``3m05s`` or ``42s`` (``?`` when unknown)."""
    if not seconds < float("inf"):
        return "?"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class StepTimer:
    """Step rate, ETA and the share of time spent waiting for data, between two log lines."""

    def __init__(self, step: int, total: int, clock=time.perf_counter):
        self.total, self.clock = int(total), clock
        self._step, self._since, self._wait = int(step), clock(), 0.0

    def waited(self, seconds: float) -> None:
        """Adds time the loop spent blocked on the input pipeline."""
        self._wait += seconds

    def report(self, step: int) -> dict[str, float]:
        """``{"steps_per_second", "data_wait", "eta_seconds"}`` since the last report; restarts."""
        now = self.clock()
        spent = max(now - self._since, 1e-9)
        rate = (step - self._step) / spent
        out = {
            "steps_per_second": rate,
            "data_wait": min(1.0, self._wait / spent),
            "eta_seconds": (self.total - step) / rate if rate > 0 else float("inf"),
        }
        self._step, self._since, self._wait = int(step), now, 0.0
        return out


def parameter_overview(params: Any) -> str:
    """A table of the parameters: path, shape, dtype and size of each, then the total."""
    import jax

    leaves = jax.tree_util.tree_leaves_with_path(params)
    rows = [("Name", "Shape", "Dtype", "Size")]
    rows += [
        ("/".join(str(getattr(k, "key", k)) for k in path), str(x.shape), str(x.dtype), str(x.size))
        for path, x in leaves
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    total, nbytes = sum(x.size for _, x in leaves), sum(x.size * x.dtype.itemsize for _, x in leaves)
    return "\n".join(lines + [f"Total: {total:,} -- {nbytes:,} bytes"])


def summary_image(
    low_res: np.ndarray, sr: np.ndarray, high_res: np.ndarray, scale: int, crop: int
) -> np.ndarray:
    """One image strip ``[LR (nearest) | bicubic | SR | HR]`` of a central LR crop, uint8."""
    c = min(crop, *low_res.shape[:2])
    y, x = (low_res.shape[0] - c) // 2, (low_res.shape[1] - c) // 2
    low_res_crop = low_res[y : y + c, x : x + c]
    hr_window = (slice(y * scale, (y + c) * scale), slice(x * scale, (x + c) * scale))
    tiles = [
        np.repeat(np.repeat(low_res_crop, scale, 0), scale, 1),
        resize.imresize(low_res_crop, scale),
        metrics.quantize_uint8(sr[hr_window]),
        high_res[hr_window],
    ]
    return np.concatenate(tiles, axis=1)
