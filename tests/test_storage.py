"""Locations (edsr_jax.storage): local paths made absolute, gs:// URLs checked once, other URLs
refused with the field named, before anything is written."""

import os

import pytest
from support.configs import tiny_config

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
