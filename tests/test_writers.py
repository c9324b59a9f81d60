"""Training's summaries (edsr_jax.writers): TensorBoard event files read back by TensorBoard,
nothing on other processes, the step timer, the parameter table, the validation image strips."""

import io
import os

import numpy as np
from PIL import Image

from edsr_jax import writers
from edsr_jax.imaging import resize


def read_events(folder):
    """TensorBoard's own reader over ``folder`` (what the TensorBoard UI shows)."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    accumulator = ea.EventAccumulator(str(folder), size_guidance={ea.IMAGES: 0, ea.SCALARS: 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_events_hold_scalars_images_and_hparams(tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    writer = writers.create_writer(str(tmp_path), True)
    writer.write_hparams(
        {"learning_rate": 1e-3, "model.arch": "edsr", "async_checkpoints": True, "scales": "(2,)"}
    )
    writer.write_scalars(10, {"train/loss": 12.5, "train/data_wait": 0.25})
    strip = np.random.default_rng(0).integers(0, 256, (1, 8, 24, 3), dtype=np.uint8)
    writer.write_images(10, {"val/x2": strip})
    writer.close()
    events = read_events(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(10, 12.5)]
    (image,) = events.Images("val/x2")
    decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    np.testing.assert_array_equal(decoded, strip[0])
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["learning_rate"].number_value == 1e-3 and hparams["model.arch"].string_value == "edsr"
    assert hparams["async_checkpoints"].bool_value is True
    assert "Total: 3 " in writers.parameter_overview({"a": np.zeros((3,), np.float32)})


def test_other_processes_write_nothing(tmp_path):
    writer = writers.create_writer(str(tmp_path), False)
    assert isinstance(writer, writers.ConsoleWriter)
    writer.write_scalars(1, {"loss": 1.0})
    writer.close()
    assert os.listdir(tmp_path) == []


def test_step_timer_reports_rate_eta_and_the_share_spent_waiting_for_data():
    now = [100.0]
    timer = writers.StepTimer(10, 110, clock=lambda: now[0])
    now[0] += 4.0
    timer.waited(1.0)
    report = timer.report(30)  # 20 steps in 4 s, 1 s of it waiting
    assert report == {"steps_per_second": 5.0, "data_wait": 0.25, "eta_seconds": 16.0}
    assert writers.format_duration(report["eta_seconds"]) == "16s"
    assert writers.format_duration(3725) == "1h02m" and writers.format_duration(185) == "3m05s"
    assert writers.format_duration(float("inf")) == "?"


def test_summary_image_is_lr_bicubic_sr_hr_of_a_central_crop():
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    sr = hr.astype(np.float32) + 0.3
    strip = writers.summary_image(lr, sr, hr, 2, crop=4)
    assert strip.dtype == np.uint8 and strip.shape == (8, 4 * 8, 3)
    y, x = 3, 4  # (10 - 4) // 2, (12 - 4) // 2
    crop = lr[y : y + 4, x : x + 4]
    np.testing.assert_array_equal(strip[:, :8], np.repeat(np.repeat(crop, 2, 0), 2, 1))
    np.testing.assert_array_equal(strip[:, 8:16], resize.imresize(crop, 2))
    np.testing.assert_array_equal(strip[:, 16:24], hr[6:14, 8:16])  # SR, quantised
    np.testing.assert_array_equal(strip[:, 24:], hr[6:14, 8:16])


def test_writing_events_does_not_import_tensorflow_even_where_it_is_installed(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from edsr_jax import writers; w = writers.create_writer(sys.argv[1], True); "
        "w.write_scalars(1, {'a': 1.0}); w.close(); print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
    assert [f for f in os.listdir(tmp_path) if f.startswith("events.out.tfevents.")]
