"""Folder names and the one model.json (edsr_jax.checkpoint.layout): writing and reading it, and
preparing a training workdir (same model, config differences, another model, a file)."""

import json
import os

import pytest

from edsr_jax.checkpoint import layout
from edsr_jax.errors import UserError

SPEC = {"arch": "edsr", "scale": 2, "num_blocks": 1, "num_features": 8, "res_scale": 1.0}


def test_model_json_round_trip_and_names(tmp_path):
    layout.write_model_json(tmp_path, SPEC, {"note": "x", "steps": [1, 2]})
    document = json.loads((tmp_path / layout.MODEL_JSON).read_text())
    assert document == {
        "format": layout.MODEL_FORMAT,
        "format_version": layout.FORMAT_VERSION,
        "spec": SPEC,
        "metadata": {"note": "x", "steps": [1, 2]},
    }
    assert layout.read_model_json(tmp_path) == (SPEC, {"note": "x", "steps": [1, 2]})
    assert os.listdir(tmp_path) == [layout.MODEL_JSON]  # written atomically: no temporary left
    assert layout.checkpoint_dir("w") == os.path.join(os.path.abspath("w"), layout.CHECKPOINTS_DIR)
    with pytest.raises(UserError, match="model metadata must be JSON-serialisable"):
        layout.write_model_json(tmp_path / "other", SPEC, {"bad": object()})


def test_model_json_that_is_missing_corrupt_foreign_or_newer_is_refused(tmp_path):
    with pytest.raises(UserError, match="no model.json in"):
        layout.read_model_json(tmp_path)
    path = tmp_path / layout.MODEL_JSON
    path.write_text('{"format": "edsr-jax-model", "spec": ')
    with pytest.raises(
        UserError, match=r"model\.json is corrupt or unreadable \(JSONDecodeError: .*\); move it away"
    ):
        layout.read_model_json(tmp_path)
    path.write_text(json.dumps({"format": "keras", "spec": SPEC}))
    with pytest.raises(UserError, match=r"not an edsr-jax model file \(format 'keras'"):
        layout.read_model_json(tmp_path)
    path.write_text(json.dumps({"format": layout.MODEL_FORMAT, "format_version": 99, "spec": SPEC}))
    with pytest.raises(UserError, match="has format_version 99; this edsr-jax reads up to 1"):
        layout.read_model_json(tmp_path)


def test_workdir_of_another_model_is_refused(tmp_path):
    assert layout.prepare_workdir(str(tmp_path), SPEC, {"seed": 0}) == []
    layout.prepare_workdir(str(tmp_path), dict(SPEC), {"seed": 1})  # same model: fine
    with pytest.raises(
        UserError, match=r"holds a run of a different model.*'scale': 4.*; use another workdir"
    ):
        layout.prepare_workdir(str(tmp_path), {**SPEC, "scale": 4}, {})


def test_a_workdir_that_is_a_file_or_has_a_corrupt_model_json_is_refused(tmp_path):
    (tmp_path / "w").write_text("not a folder")
    with pytest.raises(UserError, match=rf"workdir {tmp_path / 'w'} is a file, not a directory"):
        layout.prepare_workdir(str(tmp_path / "w"), SPEC, {})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / layout.MODEL_JSON).write_text("{")
    with pytest.raises(UserError, match="is corrupt or unreadable .*; move it away"):
        layout.prepare_workdir(str(tmp_path / "run"), SPEC, {})


def test_only_a_writing_process_creates_model_json(tmp_path):
    assert layout.prepare_workdir(str(tmp_path / "w"), SPEC, {"seed": 0}, write=False) == []
    assert not (tmp_path / "w").exists()
    layout.prepare_workdir(str(tmp_path / "w"), SPEC, {"seed": 0})
    spec, metadata = layout.read_model_json(tmp_path / "w")
    assert spec == SPEC and metadata == {"source": "training", "config": {"seed": 0}}


def test_resuming_with_another_config_reports_every_difference(tmp_path):
    first = {"seed": 0, "batch_size": 16, "data.scales": (2,), "learning_rate": 1e-4, "log_every_steps": 10}
    assert layout.prepare_workdir(str(tmp_path), SPEC, first) == []
    assert layout.prepare_workdir(str(tmp_path), SPEC, dict(first)) == []  # tuples as stored
    second = {**first, "seed": 1, "batch_size": 32, "new_field": "x"}
    del second["log_every_steps"]
    changed = layout.prepare_workdir(str(tmp_path), SPEC, second)
    assert changed == [
        ("batch_size", 16, 32),
        ("log_every_steps", 10, None),
        ("new_field", None, "x"),
        ("seed", 0, 1),
    ]
    # model.json keeps the config the run started with.
    assert layout.prepare_workdir(str(tmp_path), SPEC, first) == []


def test_folder_kinds_come_from_the_marker_or_the_layout(tmp_path):
    run, model, saved, other = (tmp_path / n for n in ("run", "model", "saved", "other"))
    (run / layout.CHECKPOINTS_DIR).mkdir(parents=True)
    layout.write_model_json(run, SPEC, {"source": layout.TRAINING_SOURCE})
    (model / layout.PARAMS_DIR).mkdir(parents=True)
    layout.write_model_json(model, SPEC, {"source": "convert-torch"})
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"pb")
    (saved / "variables" / "variables.index").write_bytes(b"i")
    layout.mark_folder(saved, layout.SAVEDMODEL)
    other.mkdir()
    (other / layout.MODEL_JSON).write_text('{"format": "someone-else"}')
    kinds = {p.name: layout.folder_kind(p) for p in (run, model, saved, other, tmp_path / "absent")}
    assert kinds == {
        "run": layout.TRAINING_WORKDIR,
        "model": layout.EXPORTED_MODEL,  # (no marker: an export of an older edsr-jax)
        "saved": layout.SAVEDMODEL,
        "other": None,
        "absent": None,
    }
    marker = json.loads((saved / layout.OWNER_FILE).read_text())
    assert marker["files"] == ["saved_model.pb", "variables/variables.index"]
    assert layout.foreign_files(saved) == []
    (saved / "variables" / "mine.txt").write_text("")
    (model / "notes.txt").write_text("")
    assert layout.foreign_files(saved) == ["variables/mine.txt"]
    assert layout.foreign_files(model) == ["notes.txt"]


def test_train_refuses_folders_that_hold_no_training_run(tmp_path):
    layout.check_training_folder(str(tmp_path / "new"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_text("")  # hidden files do not count
    layout.check_training_folder(str(tmp_path / "empty"))
    model = tmp_path / "model"
    (model / layout.PARAMS_DIR).mkdir(parents=True)
    layout.write_model_json(model, SPEC, {})
    with pytest.raises(UserError, match=r"holds an exported edsr-jax model .*config\.init_from=.*model"):
        layout.check_training_folder(str(model), allow_other_files=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("")
    with pytest.raises(UserError, match=r"not empty and holds no training run \(thesis\.txt\)"):
        layout.check_training_folder(str(tmp_path / "mine"))
    layout.check_training_folder(str(tmp_path / "mine"), allow_other_files=True)
    layout.prepare_workdir(str(tmp_path / "run"), SPEC, {})
    (tmp_path / "run" / "curve.png").write_text("")  # a run's folder may hold other files
    layout.check_training_folder(str(tmp_path / "run"))


@pytest.mark.parametrize("checkpoint", [False, True])
def test_a_run_failing_before_its_first_checkpoint_removes_only_what_it_added(tmp_path, checkpoint):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="boom"):
        with layout.removed_if_it_fails_early(str(workdir)):
            layout.prepare_workdir(str(workdir), SPEC, {})
            (workdir / layout.CHECKPOINTS_DIR / ("4" if checkpoint else "4.orbax-tmp")).mkdir(parents=True)
            raise RuntimeError("boom")
    kept = ["checkpoints", "model.json", "notes.txt"] if checkpoint else ["notes.txt"]
    assert sorted(os.listdir(workdir)) == kept
    with pytest.raises(RuntimeError, match="boom"):
        with layout.removed_if_it_fails_early(str(tmp_path / "new")):
            layout.prepare_workdir(str(tmp_path / "new"), SPEC, {})
            raise RuntimeError("boom")
    assert not (tmp_path / "new").exists()
    with layout.removed_if_it_fails_early(str(tmp_path / "ok")):
        layout.prepare_workdir(str(tmp_path / "ok"), SPEC, {})
    assert os.listdir(tmp_path / "ok") == [layout.MODEL_JSON]
