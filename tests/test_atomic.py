"""Atomic writes: a reader sees the old file or the new one, never a part of either."""

from __future__ import annotations

import json
import math
import os

import pytest
from etils import epath

from edsr_jax import atomic


def names(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_write_text_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    atomic.write_text(path, "old")
    atomic.write_text(path, "new contents")
    assert path.read_text() == "new contents"
    assert names(tmp_path) == ["a.txt"]
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    atomic.write_json(path, {"v": 1})

    def fail(self, target):  # (as the OS says it: about the temporary file being renamed)
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(type(epath.Path(path)), "replace", fail)
    with pytest.raises(OSError, match="No space left") as raised:
        atomic.write_json(path, {"v": 2})
    assert raised.value.filename == str(path)  # the user's path, not the temporary one that failed
    assert json.loads(path.read_text()) == {"v": 1}
    assert names(tmp_path) == ["a.json"]


def test_write_json_is_strict_sorted_and_turns_non_finite_floats_into_null(tmp_path):
    path = tmp_path / "r.json"
    atomic.write_json(path, {"b": [math.inf, 1.5, -math.inf], "a": {"psnr": math.nan}, "t": (1, 2)})
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert list(json.loads(text)) == ["a", "b", "t"]
    assert json.loads(text) == {"a": {"psnr": None}, "b": [None, 1.5, None], "t": [1, 2]}


def test_folder_appears_only_when_complete(tmp_path):
    target = tmp_path / "model"
    with atomic.folder(target) as tmp:
        (tmp / "part").write_text("x")
        assert not target.exists()  # nothing under the final name while it is built
    assert names(target) == ["part"]
    assert names(tmp_path) == ["model"]


def test_a_failed_folder_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError, match="crash"):
        with atomic.folder(tmp_path / "model") as tmp:
            (tmp / "part").write_text("x")
            raise RuntimeError("crash")
    assert names(tmp_path) == []


def test_folder_refuses_an_existing_target_unless_overwriting(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("o")
    with pytest.raises(FileExistsError):
        with atomic.folder(target):
            pass
    with atomic.folder(target, overwrite=True) as tmp:
        (tmp / "new").write_text("n")
    assert names(target) == ["new"]
    assert names(tmp_path) == ["model"]


def test_when_another_writer_finishes_first_its_folder_is_kept(tmp_path):
    target = tmp_path / "cache"
    with atomic.folder(target) as tmp:
        (tmp / "mine").write_text("m")
        target.mkdir()  # another process renamed its finished folder into place meanwhile
        (target / "theirs").write_text("t")
    assert names(target) == ["theirs"]
    assert names(tmp_path) == ["cache"]
