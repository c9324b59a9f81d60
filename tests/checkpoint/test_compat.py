"""Folders written by edsr-jax 0.1.0, before the package was reorganised, still load and resume.

The fixture (``tests/fixtures/v0_1``, see its README) was written by the 0.1.0 code: a training
workdir with checkpoints at steps 2 and 4, an exported model of the step-4 parameters, and those
parameters as numpy arrays.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import edsr_jax
from edsr_jax import models, train
from edsr_jax.checkpoint import layout, manager
from edsr_jax.configs import test as test_config

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures", "v0_1")
SPEC = {"arch": "edsr", "scale": 2, "num_blocks": 1, "num_features": 4, "res_scale": 1.0}


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(os.path.join(FIXTURE, "expected.npz")) as data:
        return {k: data[k] for k in data.files}


def assert_params_equal(params, expected) -> None:
    flat = {k: np.asarray(v) for k, v in models.flat_params(params).items()}
    assert sorted(flat) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(flat[key], value, err_msg=key)


@pytest.mark.parametrize("folder", ["exported", "workdir"])
def test_a_v0_1_model_loads_bit_exactly(folder, expected):
    model, variables = edsr_jax.load_model(os.path.join(FIXTURE, folder))
    assert models.model_spec(model) == SPEC
    assert_params_equal(variables["params"], expected)


def test_a_v0_1_workdir_keeps_its_steps_and_best_checkpoint():
    ckpt = manager.create_manager(layout.checkpoint_dir(os.path.join(FIXTURE, "workdir")), read_only=True)
    try:
        assert manager.complete_steps(ckpt) == [2, 4]
        assert manager.resolve_step(ckpt, "best") == 4  # the only step with a validation score
        assert manager.read_meta(ckpt, 4)["model_spec"] == SPEC
    finally:
        ckpt.close()
    spec, metadata = layout.read_model_json(os.path.join(FIXTURE, "workdir"))
    assert spec == SPEC and metadata["config"]["num_train_steps"] == 4


def fixture_config(num_train_steps: int):
    """The config the fixture's run was made with (its README), with a longer run."""
    config = test_config.get_config()
    config.model.num_blocks = 1
    config.model.num_features = 4
    config.patch_size = 8
    config.batch_size = 2
    config.num_train_steps = num_train_steps
    config.log_every_steps = 2
    config.checkpoint_every_steps = 2
    config.keep_checkpoints = 2
    config.eval_every_steps = 4
    config.eval.num_images = 1
    config.async_checkpoints = False
    return config


def test_a_v0_1_workdir_resumes_training_from_its_last_step(tmp_path, expected, capsys):
    workdir = str(tmp_path / "workdir")
    shutil.copytree(os.path.join(FIXTURE, "workdir"), workdir)
    config = fixture_config(6)
    config.batch_size = 8  # the fixture ran on one device; these tests have 8
    state = train.train_and_evaluate(config, workdir)
    out = capsys.readouterr().out
    assert "resumed from" in out and "at step 4" in out
    assert "batch_size 2 -> 8" in out and "num_train_steps 4 -> 6" in out  # read from its model.json
    # its model.json names lr_schedule, lr_decay_*: the same fields as learning_rate_*, unchanged
    (changed,) = [line for line in out.splitlines() if "config differs" in line]
    assert "schedule" not in changed and "decay" not in changed
    assert "written with the per-process single-image (edsr-jax 0.1) batch sampler" in out
    assert "continues with the global-v1 one" in out
    assert int(state.step) == 6
    model, variables = edsr_jax.load_model(workdir, which=4)
    assert_params_equal(variables["params"], expected)  # the old step is kept, untouched
    _, latest = edsr_jax.load_model(workdir)
    assert not np.array_equal(
        np.asarray(latest["params"]["head"]["kernel"]), expected["head/kernel"]
    )  # and training moved on from it
