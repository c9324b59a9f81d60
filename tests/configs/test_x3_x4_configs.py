"""The x3 and x4 configs start from their x2 run (paper, Section 4.2; the official demo.sh's
``--pre_train``): ``init_from`` is the workdir that the x2 config's own command trains into."""

import importlib
import re

import pytest

# each x3/x4 config and the x2 config it starts from
FROM_X2 = {
    "edsr_baseline_x3": "edsr_baseline_x2",
    "edsr_baseline_x4": "edsr_baseline_x2",
    "edsr_x3": "edsr_x2",
    "edsr_x4": "edsr_x2",
}


def config_module(name):
    return importlib.import_module(f"edsr_jax.configs.{name}")


def documented_workdir(name):
    """The ``--workdir`` of the command in the config's docstring."""
    (workdir,) = re.findall(r"edsr-jax train --config \S+ --workdir (\S+)", config_module(name).__doc__)
    return workdir


@pytest.mark.parametrize("name", sorted(FROM_X2))
def test_x3_and_x4_init_from_the_x2_workdir(name):
    x2_name = FROM_X2[name]
    config = config_module(name).get_config()
    x2 = config_module(x2_name).get_config()
    x2_workdir = documented_workdir(x2_name)
    assert config.init_from == x2_workdir == f"runs/{x2_name}"
    assert f"--config.init_from={x2_workdir}" in config_module(name).__doc__
    assert config.scales == (int(name[-1]),) and x2.scales == (2,) and not x2.init_from
    # the same network but for the upsampler, so every other tensor of the x2 run is copied
    assert config.model.to_dict() == x2.model.to_dict()
