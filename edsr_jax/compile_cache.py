"""The persistent XLA compilation cache: a restart loads its compiled programs from disk.

JAX caches only programs that took over 1 s to compile by default, which leaves out most of a
small run's; :func:`enable` (the ``edsr-jax`` command's process set-up) sets the folder and lowers
the thresholds; library code uses :func:`scoped`, which restores JAX's settings afterwards.

``config.compilation_cache_dir``: ``"auto"`` keeps a folder already given to JAX, else uses
``$EDSR_JAX_COMPILATION_CACHE`` or the per-user ``$XDG_CACHE_HOME/edsr-jax/xla`` (mode 0700: JAX
runs what it finds there); a folder (local or ``gs://``); or ``""`` (nothing set).
``EDSR_JAX_COMPILATION_CACHE=0`` turns it off whatever the setting.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

# Environment variable: a folder for the "auto" setting, or 0/off/false/no to turn the cache off.
ENV = "EDSR_JAX_COMPILATION_CACHE"
# The setting that picks the folder itself (the default of config.compilation_cache_dir).
AUTO = "auto"
# Values of ENV that turn the cache off.
OFF_VALUES = ("0", "off", "false", "no")
# Cache every program that took this long to compile: the initialiser, the step and validation's
# programs, not JAX's one-operation eager programs (RESULTS.md, "Start-up with the compilation cache").
MIN_COMPILE_TIME_SECS = 0.02
# No minimum entry size (the small programs of the test config are a few hundred kB).
MIN_ENTRY_SIZE_BYTES = -1
# The JAX options enable() sets besides the folder (the user's environment variable keeps each).
_THRESHOLDS = (
    ("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_SECS),
    ("jax_persistent_cache_min_entry_size_bytes", MIN_ENTRY_SIZE_BYTES),
)


def default_dir(environ: Mapping[str, str] | None = None) -> str:
    """The per-user folder: ``$XDG_CACHE_HOME/edsr-jax/xla``, else ``~/.cache/edsr-jax/xla``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, empty or relative: the XDG spec says ignore it
        home = env.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".cache")
    return os.path.join(base, "edsr-jax", "xla")


def resolve_dir(
    setting: str = AUTO, environ: Mapping[str, str] | None = None, current: str | None = None
) -> str | None:
    """The cache folder for ``setting`` (see the module docstring), or None for no cache.

    Args:
      setting: ``"auto"``, a folder, or ``""``.
      environ: the environment to read (default ``os.environ``).
      current: the folder JAX is already configured with, if any (kept by ``"auto"``).
    """
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
    """Turns the cache on for the rest of this process, before its first compile (JAX opens the
    cache once); returns the folder in use, or None."""
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
    """The cache of ``setting`` inside the block; JAX's cache settings as they were afterwards.

    Yields the folder in use, or None when ``setting`` turns nothing on. JAX opens its cache once
    per process, so it is reopened on entry and on exit (``reset_cache``).
    """
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
