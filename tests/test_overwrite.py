"""The one rule for what a command may replace (edsr_jax.overwrite): files only with force, never
an input or part of a model; folders only when edsr-jax wrote them as the same kind, holding
nothing else; unwritable outputs refused before any work. Checked by the files that survive."""

import os

import pytest

from edsr_jax import overwrite
from edsr_jax.checkpoint import layout
from edsr_jax.errors import UserError

SPEC = {"arch": "edsr", "scale": 2, "num_blocks": 1, "num_features": 8, "res_scale": 1.0}


def exported_model(folder, marked=True):
    """An exported model's files (model.json, params/), marked as save_model marks them."""
    (folder / layout.PARAMS_DIR).mkdir(parents=True)
    (folder / layout.PARAMS_DIR / "manifest.ocdbt").write_bytes(b"orbax")
    layout.write_model_json(folder, SPEC, {})
    if marked:
        layout.mark_folder(folder, layout.EXPORTED_MODEL)
    return folder


def training_workdir(folder):
    (folder / layout.CHECKPOINTS_DIR / "4").mkdir(parents=True)
    layout.write_model_json(folder, SPEC, {"source": layout.TRAINING_SOURCE, "config": {}})
    return folder


def test_an_existing_file_is_replaced_only_with_force(tmp_path):
    path = tmp_path / "out.png"
    overwrite.check_file(path)  # absent: fine
    path.write_bytes(b"mine")
    with pytest.raises(UserError, match=r"out\.png exists; pass --force to replace it"):
        overwrite.check_file(path)
    overwrite.check_file(path, force=True)
    with pytest.raises(UserError, match="is a folder"):
        overwrite.check_file(tmp_path, force=True)


def test_many_existing_outputs_are_named_in_one_line(tmp_path):
    paths = [tmp_path / f"{n}.png" for n in "abcdefg"]
    for p in paths[:6]:
        p.write_bytes(b"")
    with pytest.raises(
        UserError, match=r"6 of the 7 output files exist in .* \(a\.png, .*e\.png and 1 more\)"
    ):
        overwrite.check_files(paths)
    overwrite.check_files(paths, force=True)


def test_an_input_or_a_model_file_is_never_an_output_even_with_force(tmp_path):
    inputs = tmp_path / "data"
    inputs.mkdir()
    (inputs / "hr.png").write_bytes(b"input")
    with pytest.raises(UserError, match=r"hr\.png: it is an input of this command"):
        overwrite.check_file(inputs / "hr.png", force=True, inputs=[inputs])
    model = exported_model(tmp_path / "model")
    for path in (model / "model.json", model / "new.onnx", model / "params" / "x"):
        with pytest.raises(UserError, match="it is part of an exported edsr-jax model"):
            overwrite.check_file(path, force=True)
    run = training_workdir(tmp_path / "run")
    with pytest.raises(UserError, match="part of an edsr-jax training workdir"):
        overwrite.check_file(run / "model.json", force=True)
    with pytest.raises(UserError, match="part of an edsr-jax training workdir"):
        overwrite.check_file(run / "checkpoints" / "4" / "x.png", force=True)
    overwrite.check_file(run / "curve.json")  # a new file beside a run's own files is fine


def test_a_folder_is_replaced_only_when_edsr_jax_wrote_it_as_the_same_kind_and_nothing_else(tmp_path):
    overwrite.check_folder(tmp_path / "new", layout.EXPORTED_MODEL)
    (tmp_path / "empty").mkdir()
    overwrite.check_folder(tmp_path / "empty", layout.EXPORTED_MODEL)
    model = exported_model(tmp_path / "model")
    with pytest.raises(UserError, match="holds an exported edsr-jax model .* already; pass --force"):
        overwrite.check_folder(model, layout.EXPORTED_MODEL)
    overwrite.check_folder(model, layout.EXPORTED_MODEL, force=True)
    old = exported_model(tmp_path / "old", marked=False)  # (written before the marker existed)
    overwrite.check_folder(old, layout.EXPORTED_MODEL, force=True)
    refused = {
        "user": r"holds files edsr-jax did not write \(thesis\.txt\)",
        "model": r"besides an exported edsr-jax model .* it holds files .* \(notes\.txt\)",
        "deep": r"besides an exported edsr-jax model .* it holds files .* \(params/mine\.bin\)",
        "old": r"besides .* \(notes\.txt\)",
        "run": "it holds an edsr-jax training workdir",
        "file": "is a file",
    }
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "thesis.txt").write_text("mine")
    (model / "notes.txt").write_text("mine")
    exported_model(tmp_path / "deep")
    (tmp_path / "deep" / "params" / "mine.bin").write_text("mine")
    (old / "notes.txt").write_text("mine")
    training_workdir(tmp_path / "run")
    (tmp_path / "file").write_text("mine")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for name, message in refused.items():
        with pytest.raises(UserError, match=message):
            overwrite.check_folder(tmp_path / name, layout.EXPORTED_MODEL, force=True)
    with pytest.raises(UserError, match=r"holds an exported edsr-jax model .*, not a SavedModel"):
        overwrite.check_folder(tmp_path / "old", layout.SAVEDMODEL, force=True)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_an_output_whose_folder_cannot_be_written_is_refused_naming_it(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(
        UserError, match=r"cannot write .*a_file/sub/x\.onnx: .*a_file is a file, not a folder"
    ):
        overwrite.check_file(tmp_path / "a_file" / "sub" / "x.onnx")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    os.chmod(readonly, 0o555)
    try:
        if os.access(readonly, os.W_OK):  # (root writes anywhere on a writable file system)
            pytest.skip("this user can write into a read-only folder")
        with pytest.raises(UserError, match=r"cannot write .*readonly/x\.png: the folder .* is not writable"):
            overwrite.check_file(readonly / "x.png")
    finally:
        os.chmod(readonly, 0o755)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "readonly"]
