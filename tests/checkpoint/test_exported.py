"""Exported models (edsr_jax.checkpoint.exported): save/load round trip, atomic save, and the load
errors (missing, a file, empty, a workdir, corrupt model.json, missing or mismatched parameters)."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import edsr_jax
from edsr_jax import atomic, checkpoint, models
from edsr_jax.checkpoint import exported, layout
from edsr_jax.errors import UserError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny MDSR saved with save_model: (directory, model, variables)."""
    model = models.MDSR(scales=(2, 4), num_blocks=1, num_features=4)
    rng = np.random.default_rng(1)
    params = {}
    for path, shape in models.param_shapes(model).items():
        *modules, leaf = path.split("/")
        node = params
        for name in modules:
            node = node.setdefault(name, {})
        node[leaf] = rng.standard_normal(shape, np.float32)
    variables = {"params": params}
    directory = tmp_path_factory.mktemp("saved") / "model"
    exported.save_model(directory, model, variables, metadata={"note": "round trip"})
    return directory, model, variables


def test_save_load_round_trip_is_bit_exact(saved):
    directory, model, variables = saved
    loaded_model, loaded = edsr_jax.load_model(directory)
    assert models.model_spec(loaded_model) == models.model_spec(model)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(variables)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(variables), strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert json.loads((directory / "model.json").read_text())["metadata"] == {"note": "round trip"}
    assert edsr_jax.load_model(directory / "model.json", dtype=jnp.bfloat16)[0].dtype == jnp.bfloat16
    # the same functions under every name they are exported as (edsr_jax.load_model also takes
    # published names: tests/interop/test_pretrained.py)
    assert checkpoint.load_model is exported.load_model
    assert checkpoint.save_model is exported.save_model


def test_a_batch_norm_model_round_trips_with_its_running_averages(tmp_path):
    model = models.SRResNet(scale=2, num_blocks=1, num_features=4)
    shapes = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))
    rng = np.random.default_rng(2)
    variables = jax.tree_util.tree_map(lambda a: rng.uniform(0.5, 1.5, a.shape).astype(np.float32), shapes)
    exported.save_model(tmp_path / "m", model, variables)
    loaded_model, loaded = edsr_jax.load_model(tmp_path / "m")
    assert sorted(loaded) == ["batch_stats", "params"]
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(variables), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    x = jnp.asarray(rng.uniform(0, 255, (1, 6, 6, 3)), jnp.float32)  # eval mode: the running averages
    np.testing.assert_array_equal(loaded_model.apply(loaded, x), model.apply(variables, x))
    with pytest.raises(UserError, match=r"SRResNet has batch norm: variables need its 'batch_stats'"):
        exported.save_model(tmp_path / "n", model, {"params": variables["params"]})


def test_interrupted_save_leaves_nothing_that_loads(tmp_path, monkeypatch, saved):
    _, model, variables = saved

    def crash(*args):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(layout, "write_model_json", crash)
    monkeypatch.setattr(atomic, "_remove", lambda path: None)  # as if the process died
    with pytest.raises(RuntimeError, match="simulated crash"):
        exported.save_model(tmp_path / "model", model, variables)
    assert not (tmp_path / "model").exists()
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".model.tmp-") and (leftover / "params").is_dir()
    with pytest.raises(UserError, match="no model.json"):
        edsr_jax.load_model(leftover)


def test_save_refuses_non_empty_directory_and_bad_params(tmp_path, saved):
    _, model, variables = saved
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(UserError, match=r"holds files edsr-jax did not write \(x\.txt\)"):
        exported.save_model(tmp_path, model, variables, overwrite=True)
    assert (tmp_path / "x.txt").exists()
    wrong = models.MDSR(scales=(2, 3), num_blocks=1, num_features=4)
    with pytest.raises(UserError, match=r"lack pre_process_x3_0/conv1/bias"):
        exported.save_model(tmp_path / "m", wrong, variables)
    assert not (tmp_path / "m").exists()
    with pytest.raises(UserError, match=r"expected variables as \{'params': ...\}"):
        exported.save_model(tmp_path / "m", model, variables["params"])


def test_save_overwrite_replaces_an_earlier_model_and_nothing_a_user_wrote(tmp_path, saved):
    _, model, variables = saved
    exported.save_model(tmp_path / "m", model, variables, metadata={"run": 1})
    with pytest.raises(UserError, match="holds an exported edsr-jax model .* already; pass --force"):
        exported.save_model(tmp_path / "m", model, variables, metadata={"run": 2})
    exported.save_model(tmp_path / "m", model, variables, metadata={"run": 2}, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [".edsr-jax.json", "model.json", "params"]
    assert layout.read_model_json(tmp_path / "m")[1] == {"run": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary or old folder left
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files edsr-jax did not write \(notes\.txt\)"):
        exported.save_model(tmp_path / "m", model, variables, overwrite=True)
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_check_params_match_names_missing_unexpected_and_mismatched_tensors(saved):
    _, model, variables = saved
    exported.check_params_match(model, variables["params"], where="these")
    extra = {**variables["params"], "extra": {"kernel": np.zeros((1,))}}
    with pytest.raises(UserError, match="these have extra/kernel that the model"):
        exported.check_params_match(model, extra, where="these")
    small = {**variables["params"], "tail": {**variables["params"]["tail"], "bias": np.zeros((2,))}}
    with pytest.raises(UserError, match=r"these: tail/bias has shape \(2,\) but the model .* needs \(3,\)"):
        exported.check_params_match(model, small, where="these")


def _copy(saved, tmp_path):
    return shutil.copytree(saved[0], tmp_path / "copy")


def test_load_errors_are_clear(tmp_path, saved):
    with pytest.raises(UserError, match="does not exist"):
        edsr_jax.load_model(tmp_path / "nothing")
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(UserError, match=r"w\.pt is a file.*convert-torch"):
        edsr_jax.load_model(tmp_path / "w.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="directory is empty"):
        edsr_jax.load_model(tmp_path / "empty")
    with pytest.raises(UserError, match=r"no model.json in it \(found empty, w\.pt\)"):
        edsr_jax.load_model(tmp_path / "empty" / "..")
    (tmp_path / "workdir" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="looks like a training workdir"):
        edsr_jax.load_model(tmp_path / "workdir")


def test_load_rejects_corrupt_json_missing_params_and_wrong_shapes(tmp_path, saved):
    copy = _copy(saved, tmp_path)
    good = (copy / "model.json").read_text()
    (copy / "model.json").write_text(good[: len(good) // 2])
    with pytest.raises(UserError, match=r"model\.json is corrupt or unreadable \(.*\); move it away"):
        edsr_jax.load_model(copy)

    document = json.loads(good)
    document["spec"]["num_features"] = 6
    (copy / "model.json").write_text(json.dumps(document))
    with pytest.raises(UserError, match=r"block_0/conv1/bias has shape \(4,\) but .* needs \(6,\)"):
        edsr_jax.load_model(copy)

    document["spec"] = {"arch": "srcnn"}
    (copy / "model.json").write_text(json.dumps(document))
    with pytest.raises(UserError, match=r"model\.json has an invalid model spec \{'arch': 'srcnn'\}"):
        edsr_jax.load_model(copy)

    (copy / "model.json").write_text(good)
    (copy / "params" / "manifest.ocdbt").unlink()
    with pytest.raises(UserError, match="are incomplete: manifest.ocdbt missing"):
        edsr_jax.load_model(copy)
    shutil.rmtree(copy / "params")
    with pytest.raises(UserError, match="no params/"):
        edsr_jax.load_model(copy)
