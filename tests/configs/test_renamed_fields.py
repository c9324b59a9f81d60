"""Configs written before ``lr_*`` became ``learning_rate_*`` still work, with a deprecation warning:
a config file that sets the old fields, and ``--config.lr_*`` overrides."""

import textwrap

import pytest

from edsr_jax import config_checks, optim
from edsr_jax.cli import config_flags

OLD_TO_NEW = {
    "lr_schedule": "learning_rate_schedule",
    "lr_decay_steps": "learning_rate_decay_steps",
    "lr_decay_factor": "learning_rate_decay_factor",
}


def test_a_config_file_with_the_old_learning_rate_fields_trains_with_their_values(tmp_path):
    path = tmp_path / "old_config.py"
    path.write_text(
        textwrap.dedent(
            """
            from edsr_jax.configs import default

            def get_config():
                config = default.get_config()
                config.learning_rate = 1.0
                config.warmup_fraction = 0.0
                config.lr_schedule = "step"
                config.lr_decay_steps = 3
                config.lr_decay_factor = 0.25
                return config
            """
        )
    )
    config = config_flags.load_config(str(path))
    with pytest.deprecated_call(match=r"config\.lr_decay_steps is now config\.learning_rate_decay_steps"):
        upgraded = config_checks.upgrade(config)
    assert not any(old in upgraded for old in OLD_TO_NEW)
    assert (upgraded.learning_rate_decay_steps, upgraded.learning_rate_decay_factor) == (3, 0.25)
    config_checks.check_config(upgraded)
    schedule = optim.create_learning_rate_fn(upgraded)
    assert [float(schedule(step)) for step in (0, 2, 3, 6)] == [1.0, 1.0, 0.25, 0.0625]


def test_old_learning_rate_overrides_set_the_new_fields_and_say_so(capsys):
    config = config_flags.load_config("test")
    pairs = [("lr_schedule", "step"), ("lr_decay_steps", "7"), ("lr_decay_factor", "0.1")]
    config = config_flags.apply_overrides(config, pairs)
    assert config.learning_rate_schedule == "step"
    assert config.learning_rate_decay_steps == 7 and isinstance(config.learning_rate_decay_steps, int)
    assert config.learning_rate_decay_factor == 0.1
    assert not any(old in config for old in OLD_TO_NEW)
    err = capsys.readouterr().err
    assert (
        "warning: config.lr_schedule is now config.learning_rate_schedule "
        "(use config.learning_rate_schedule='step')" in err
    )
    assert "config.lr_decay_steps is now config.learning_rate_decay_steps" in err


def test_a_flat_model_json_config_with_the_old_names_reads_as_the_new_one():
    stored = {"lr_schedule": "cosine", "lr_decay_steps": 200_000, "lr_decay_factor": 0.5, "seed": 0}
    assert config_checks.upgrade_flat(stored) == {
        "learning_rate_schedule": "cosine",
        "learning_rate_decay_steps": 200_000,
        "learning_rate_decay_factor": 0.5,
        "seed": 0,
    }
