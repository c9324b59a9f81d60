"""Locations (edsr_jax.storage): local paths made absolute, gs:// URLs checked once, other URLs
refused with the field named, before anything is written."""

import json
import os
import struct
import subprocess
import sys

import pytest
from support.configs import tiny_config
from support.paths import TESTS

from edsr_jax import config_checks, storage, train
from edsr_jax.errors import UserError


def test_local_paths_become_absolute_and_gs_urls_pass_when_a_client_is_installed(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert storage.location("runs/x", "workdir") == os.path.join(str(tmp_path), "runs", "x")
    assert storage.location(tmp_path / "y", "workdir") == str(tmp_path / "y")
    for present in ("gcsfs", "tensorflow"):
        monkeypatch.setattr(storage, "_installed", lambda package, p=present: package == p)
        assert storage.location("gs://bucket/run", "workdir") == "gs://bucket/run"


def test_gs_without_gcsfs_or_tensorflow_names_the_field_and_the_extra(monkeypatch):
    monkeypatch.setattr(storage, "_installed", lambda package: False)
    with pytest.raises(UserError) as info:
        storage.location("gs://bucket/run", "workdir")
    assert str(info.value) == (
        "workdir='gs://bucket/run' needs gcsfs or tensorflow to reach gs:// from Python: "
        "pip install 'edsr-jax[gcs]'"
    )


@pytest.mark.parametrize("url", ["memory://bucket/run", "s3://bucket/run", "file:///tmp/run"])
def test_other_url_schemes_are_refused(url):
    with pytest.raises(
        UserError, match=rf"^workdir='{url}': URLs may be gs:// only \(or give a local path\)$"
    ):
        storage.location(url, "workdir")


def test_folders_read_as_local_files_refuse_urls_in_the_config_check(monkeypatch):
    monkeypatch.setattr(storage, "_installed", lambda package: True)
    config = tiny_config("", data__source="div2k_folder", data__data_dir="gs://bucket/DIV2K")
    assert config_checks.problems(config) == [
        "data.data_dir='gs://bucket/DIV2K' must be a local path: its reader opens local files only"
    ]
    config = tiny_config("gs://bucket/cache", data__source="tfds", data__data_dir="gs://bucket/tfds")
    assert config_checks.problems(config) == [
        "data.cache_dir='gs://bucket/cache' must be a local path: its reader opens local files only"
    ]
    assert (
        config_checks.problems(tiny_config("", data__source="tfds", data__data_dir="gs://bucket/tfds")) == []
    )


def test_a_workdir_url_of_another_scheme_stops_training_before_anything_is_written(
    monkeypatch, tmp_path, cache_dir
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"^workdir='memory://bucket/run': URLs may be gs:// only"):
        train.train_and_evaluate(tiny_config(cache_dir), "memory://bucket/run")
    assert os.listdir(tmp_path) == []


# --- gs:// for real: a stand-in for Cloud Storage on 127.0.0.1 ----------------------------------------

# `edsr-jax train` on the tiny TFDS dataset, both read from and written to the stand-in bucket.
GS_TRAIN = [
    "train",
    "--config",
    "test",
    "--workdir",
    "gs://bucket/run",
    "--config.data.source=tfds",
    "--config.data.tfds_name=div2k_tiny",
    "--config.data.data_dir=gs://bucket/tfds",
    "--config.data.train_range=1,6",
    "--config.data.val_range=801,802",
    "--config.eval.num_images=1",
    "--config.eval_every_steps=0",
]


@pytest.fixture(scope="module")
def gs_runs(tmp_path_factory):
    """A 4-step run and its resume to 6 steps, in ``gs://bucket/run`` of tests/support/gcs_server.py
    (gcsfs, TensorStore and ArrayRecord's GCS client all talk to it); ``(port, outputs, cwd)``."""
    from support import gcs_server, tiny_tfds

    tmp = tmp_path_factory.mktemp("gs")
    cwd = tmp / "cwd"
    cwd.mkdir()
    server = subprocess.Popen([sys.executable, gcs_server.__file__], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        assert gcs_server.upload_tree(port, tiny_tfds.prepare(str(tmp / "tfds")), "tfds") > 0
        env = {**os.environ, **gcs_server.client_environment(port), "PYTHONPATH": TESTS}
        outputs = []
        for steps in (4, 6):
            command = [sys.executable, "-m", "edsr_jax.cli", *GS_TRAIN, f"--config.num_train_steps={steps}"]
            run = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
            # Both ends of stderr: a failure's own traceback comes before what threads print at exit.
            ends = run.stderr[:6000] + "\n...\n" + run.stderr[-3000:]
            assert run.returncode == 0, run.stdout[-2000:] + ends
            outputs.append(run.stdout)
        yield port, outputs, cwd
    finally:
        server.kill()
        server.wait()


@pytest.mark.slow
def test_training_reads_tfds_from_gs_and_writes_resumable_checkpoints_there(gs_runs):
    from support import gcs_server

    port, (first, second), cwd = gs_runs
    assert "done: step 4 in gs://bucket/run" in first
    assert "resumed from gs://bucket/run/checkpoints at step 4" in second and "done: step 6" in second
    names = gcs_server.list_names(port, "run/")
    assert {"run/model.json", "run/parameters.txt"} <= set(names)
    for step in (4, 6):  # Orbax's commit marker on object stores, for the step and each item
        assert f"run/checkpoints/{step}/commit_success.txt" in names
        assert f"run/checkpoints/{step}/params/commit_success.txt" in names
    assert len([n for n in names if n.startswith("run/events.out.tfevents.")]) == 2
    assert json.loads(gcs_server.download(port, "run/model.json"))["spec"]["num_blocks"] == 2
    assert os.listdir(cwd) == []  # nothing landed in a local folder named "gs:"


@pytest.mark.slow
def test_tensorboard_events_in_gs_hold_every_record(gs_runs):
    from support import gcs_server
    from tensorboard.compat.proto import event_pb2

    port, _, _ = gs_runs
    for name in [n for n in gcs_server.list_names(port, "run/") if "tfevents" in n]:
        data, events, at = gcs_server.download(port, name), [], 0
        while at < len(data):  # TFRecord framing: length, its CRC, the record, its CRC
            (length,) = struct.unpack("<Q", data[at : at + 8])
            events.append(event_pb2.Event.FromString(data[at + 12 : at + 12 + length]))
            at += 16 + length
        assert events[0].file_version == "brain.Event:2", name
        tags = {value.tag for event in events for value in event.summary.value}
        assert "train/loss" in tags and "val/psnr_x2" in tags, (name, tags)
