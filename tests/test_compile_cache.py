"""The persistent compilation cache (edsr_jax.compile_cache): where "auto" points, what turns it off,
the thresholds it sets, and a second training process loading what the first one compiled."""

import os
import subprocess
import sys

import jax
import pytest
from support.configs import TINY
from support.paths import TEST_CONFIG

from edsr_jax import compile_cache
from edsr_jax.configs import default as default_config

# The JAX options enable() may change; restored after each test that calls it.
OPTIONS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture
def jax_options():
    """Restores the JAX options enable() sets (it edits this process's global config)."""
    before = {name: getattr(jax.config, name) for name in OPTIONS}
    yield
    for name, value in before.items():
        jax.config.update(name, value)


def test_default_dir_is_under_xdg_cache_home():
    assert compile_cache.default_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == "/c/edsr-jax/xla"


@pytest.mark.parametrize("xdg", [None, "", "relative/cache"])
def test_default_dir_falls_back_to_home_dot_cache(xdg):
    env = {"HOME": "/h"} if xdg is None else {"HOME": "/h", "XDG_CACHE_HOME": xdg}
    assert compile_cache.default_dir(env) == "/h/.cache/edsr-jax/xla"


def test_the_default_config_resolves_to_the_per_user_folder():
    setting = default_config.get_config().compilation_cache_dir
    assert setting == compile_cache.AUTO
    assert compile_cache.resolve_dir(setting, {"HOME": "/h"}) == "/h/.cache/edsr-jax/xla"


def test_an_empty_setting_turns_the_cache_off():
    assert compile_cache.resolve_dir("", {"HOME": "/h"}) is None
    assert compile_cache.resolve_dir("", {compile_cache.ENV: "/elsewhere"}, current=None) is None


@pytest.mark.parametrize("value", ["0", "off", "FALSE", " no "])
@pytest.mark.parametrize("setting", [compile_cache.AUTO, "/explicit"])
def test_the_environment_variable_turns_the_cache_off(value, setting):
    assert compile_cache.resolve_dir(setting, {compile_cache.ENV: value, "HOME": "/h"}) is None


def test_the_environment_variable_names_the_auto_folder_but_not_an_explicit_one():
    env = {compile_cache.ENV: "~/xla", "HOME": "/h"}
    assert compile_cache.resolve_dir(compile_cache.AUTO, env) == os.path.expanduser("~/xla")
    assert compile_cache.resolve_dir("/explicit", env) == "/explicit"


def test_auto_keeps_a_folder_jax_already_has_and_a_folder_replaces_it():
    env = {"HOME": "/h"}
    assert compile_cache.resolve_dir(compile_cache.AUTO, env, current="/jax") == "/jax"
    assert compile_cache.resolve_dir("/mine", env, current="/jax") == "/mine"


def test_enable_sets_the_folder_and_thresholds(tmp_path, jax_options):
    jax.config.update("jax_compilation_cache_dir", None)
    path = compile_cache.enable(compile_cache.AUTO, {"HOME": str(tmp_path)})
    assert path == str(tmp_path / ".cache" / "edsr-jax" / "xla")
    assert os.path.isdir(path) and os.stat(path).st_mode & 0o777 == 0o700
    assert jax.config.jax_compilation_cache_dir == path
    assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_TIME_SECS
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == compile_cache.MIN_ENTRY_SIZE_BYTES


def test_enable_keeps_a_threshold_the_user_set(tmp_path, jax_options):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 7.0)
    env = {"HOME": str(tmp_path), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "7"}
    assert compile_cache.enable(str(tmp_path / "c"), env) == str(tmp_path / "c")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 7.0


def test_enable_off_changes_nothing(jax_options):
    jax.config.update("jax_compilation_cache_dir", None)
    assert compile_cache.enable(compile_cache.AUTO, {compile_cache.ENV: "0"}) is None
    assert compile_cache.enable("", {}) is None
    assert jax.config.jax_compilation_cache_dir is None


def _train(workdir, cache):
    """One tiny `edsr-jax train` in a fresh process with ``cache`` as the cache; its stderr."""
    command = [sys.executable, "-m", "edsr_jax.cli", "train", "--config", TEST_CONFIG, "--workdir", workdir]
    command += [f"--config.{k}={v}" for k, v in {**TINY, "num_train_steps": "2"}.items()]
    env = {**os.environ, compile_cache.ENV: cache, "JAX_LOG_COMPILES": "1"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and "done: step 2" in result.stdout, result.stdout + result.stderr
    return result.stderr


def _programs(folder):
    """Names of the compiled programs in a JAX cache folder (``jit_train_step`` ...)."""
    return {name.rsplit("-", 2)[0] for name in os.listdir(folder) if name.endswith("-cache")}


def test_a_second_training_process_loads_what_the_first_compiled(tmp_path):
    cache = str(tmp_path / "xla")
    first = _train(str(tmp_path / "run1"), cache)
    written = _programs(cache)
    # The initialiser, the step and validation's programs all compile in under JAX's default 1 s.
    assert "jit_init" in written and "jit_one_train_step" in written, written
    assert "Persistent compilation cache hit" not in first
    second = _train(str(tmp_path / "run2"), cache)
    hits = {line.split("'")[1] for line in second.splitlines() if "Persistent compilation cache hit" in line}
    assert hits == written, (hits, written)  # (tiny programs may compile again: under the threshold)


def test_scoped_turns_the_cache_on_inside_and_restores_the_settings_after(tmp_path, jax_options):
    jax.config.update("jax_compilation_cache_dir", None)
    before = {name: getattr(jax.config, name) for name in OPTIONS}
    with compile_cache.scoped(str(tmp_path / "c"), {}) as path:
        assert path == str(tmp_path / "c") and jax.config.jax_compilation_cache_dir == path
        assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_TIME_SECS
    assert {name: getattr(jax.config, name) for name in OPTIONS} == before
    with compile_cache.scoped("", {}) as path:  # nothing asked: nothing changes
        assert path is None and {name: getattr(jax.config, name) for name in OPTIONS} == before


def test_training_with_a_cache_folder_in_its_config_fills_it_and_restores_jax(
    tmp_path, cache_dir, jax_options
):
    from support.configs import tiny_config

    from edsr_jax import train

    jax.config.update("jax_compilation_cache_dir", None)
    before = {name: getattr(jax.config, name) for name in OPTIONS}
    folder = tmp_path / "xla"
    config = tiny_config(cache_dir, num_train_steps=2, compilation_cache_dir=str(folder))
    train.train_and_evaluate(config, str(tmp_path / "w"))
    assert {"jit_init", "jit_one_train_step"} <= _programs(folder)
    assert {name: getattr(jax.config, name) for name in OPTIONS} == before
    train.train_and_evaluate(tiny_config(cache_dir, num_train_steps=4), str(tmp_path / "w"))  # "auto"
    assert {name: getattr(jax.config, name) for name in OPTIONS} == before  # (the CLI turns "auto" on)
