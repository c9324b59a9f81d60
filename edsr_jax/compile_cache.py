"""The persistent XLA compilation cache: a restart loads its compiled programs from disk.

:func:`enable` is for the command's own process; library code uses :func:`scoped`, which restores
JAX's settings. The per-user folder is mode 0700, as JAX runs what it finds there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

# A folder for the "auto" setting, or one of OFF_VALUES.
ENV = "EDSR_JAX_COMPILATION_CACHE"
AUTO = "auto"
OFF_VALUES = ("0", "off", "false", "no")
# Caches the step and validation, not eager one-op programs
# (RESULTS.md "Start-up with the compilation cache").
MIN_COMPILE_TIME_SECS = 0.02
MIN_ENTRY_SIZE_BYTES = -1
# Set by enable() unless the user's environment sets them.
_THRESHOLDS = (
    ("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS),
    ("jax_persistent_cache_min_entry_size_bytes", MIN_ENTRY_SIZE_BYTES),
)


def default_dir(environ: Mapping[str, str] | None = None) -> str:
    """The per-user folder: ``$XDG_CACHE_HOME/edsr-jax/xla``, else ``~/.cache/edsr-jax/xla``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec ignores a relative one
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".cache")
    return os.path.join(base, "edsr-jax", "xla")


def resolve_dir(
    setting: str = AUTO, environ: Mapping[str, str] | None = None, current: str | None = None
) -> str | None:
    """The cache folder for ``setting`` (``"auto"``, a folder or ``""``), or None; ``current``: JAX's."""
    env = os.environ if environ is None else environ
    override = env.get(ENV, "").strip()
    if override.lower() in OFF_VALUES or not setting:
        return None
    if setting != AUTO:
        return os.path.expanduser(setting)
    if current:
        return current
    return os.path.expanduser(override) if override else default_dir(env)


def enable(setting: str = AUTO, environ: Mapping[str, str] | None = None) -> str | None:
    """Turns the cache on for this process, before its first compile; returns the folder in use, or None."""
    import jax

    env = os.environ if environ is None else environ
    current = jax.config.jax_compilation_cache_dir
    path = resolve_dir(setting, env, current)
    if path is None:
        return None
    if path == default_dir(env):
        os.makedirs(path, mode=0o700, exist_ok=True)
    if path != current:
        jax.config.update("jax_compilation_cache_dir", path)
    for name, value in _THRESHOLDS:
        if name.upper() not in env:
            jax.config.update(name, value)
    return path


def _settings() -> dict:
    import jax

    names = ("jax_compilation_cache_dir", *(name for name, _ in _THRESHOLDS))
    return {name: getattr(jax.config, name) for name in names}


@contextlib.contextmanager
def scoped(setting: str, environ: Mapping[str, str] | None = None) -> Iterator[str | None]:
    """The cache of ``setting`` inside the block (yields its folder or None); JAX's own restored after."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    before = _settings()
    path = enable(setting, environ)
    changed = _settings() != before
    if changed:
        compilation_cache.reset_cache()
    try:
        yield path
    finally:
        if changed:
            for name, value in before.items():
                jax.config.update(name, value)
            compilation_cache.reset_cache()
