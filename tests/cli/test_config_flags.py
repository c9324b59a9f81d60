"""``--config NAME|FILE`` and ``--config.field=value`` (edsr_jax.cli.config_flags): packaged names
and files, typed overrides, unknown fields and bad values."""

import argparse

import pytest
from support.paths import TEST_CONFIG

from edsr_jax.cli import config_flags
from edsr_jax.errors import UserError


def test_config_overrides_convert_types_and_reject_unknown_fields():
    config = config_flags.load_config(TEST_CONFIG)
    pairs = config_flags.split_overrides(
        [
            "--config.batch_size=32",
            "--config.scales",
            "2,3,4",
            "--config.eval.self_ensemble=true",
            "--config.learning_rate=2e-4",
            "--config.model.arch=mdsr",
        ]
    )
    config = config_flags.apply_overrides(config, pairs)
    assert config.batch_size == 32 and config.scales == (2, 3, 4) and config.eval.self_ensemble is True
    assert config.learning_rate == 2e-4 and config.model.arch == "mdsr"
    with pytest.raises(UserError, match="unknown config field --config.batch_sise.*did you mean batch_size"):
        config_flags.apply_overrides(config, [("batch_sise", "3")])
    with pytest.raises(UserError, match="expected a int like 32"):
        config_flags.apply_overrides(config, [("batch_size", "many")])
    with pytest.raises(UserError, match=r"--config\.model is a group of fields, set one of arch, "):
        config_flags.apply_overrides(config, [("model", "edsr")])


def test_a_packaged_name_and_the_configs_file_give_the_same_config():
    assert {"default", "demo", "test", "edsr_x2", "mdsr_baseline"} <= set(config_flags.config_names())
    assert config_flags.load_config("test").to_dict() == config_flags.load_config(TEST_CONFIG).to_dict()
    with pytest.raises(
        UserError, match=r"config tset is neither a packaged config nor a file; did you mean test"
    ):
        config_flags.load_config("tset")


def test_a_config_file_without_get_config_is_refused(tmp_path):
    (tmp_path / "c.py").write_text("x = 1\n")
    with pytest.raises(UserError, match=r"c\.py defines no get_config\(\)"):
        config_flags.load_config(str(tmp_path / "c.py"))


def test_split_overrides_needs_the_prefix_and_a_value():
    assert config_flags.split_overrides([]) == []
    with pytest.raises(UserError, match="unexpected argument 'batch_size=3'; overrides look like --config"):
        config_flags.split_overrides(["batch_size=3"])
    with pytest.raises(UserError, match=r"--config\.seed needs a value"):
        config_flags.split_overrides(["--config.seed"])


def test_the_parser_collects_overrides_after_the_other_flags():
    parser = argparse.ArgumentParser()
    config_flags.add_config_flags(parser)
    parser.add_argument("--workdir")
    args = parser.parse_args(
        ["--config", "test", "--workdir", "w", "--config.seed=3", "--config.scales", "2"]
    )
    assert args.config == "test" and args.workdir == "w"
    assert args.overrides == ["--config.seed=3", "--config.scales", "2"]
    assert config_flags.split_overrides(args.overrides) == [("seed", "3"), ("scales", "2")]
