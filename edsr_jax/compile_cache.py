"""The persistent XLA compilation cache, on by default: a restart loads its programs from disk.

What and why: JAX compiles the state initialiser, the training step and validation's programs at
every start. On a 2-core CPU that is most of the time before the first step of a small run, and
JAX's own default (cache nothing that compiled in under 1 s) skips exactly those programs (the
test config's step compiles in about 0.9 s, its initialiser in 0.45 s). So :func:`enable`

* points ``jax_compilation_cache_dir`` at a per-user folder, ``$XDG_CACHE_HOME/edsr-jax/xla``
  (``~/.cache/edsr-jax/xla`` when ``XDG_CACHE_HOME`` is unset), created private (mode 0700: JAX
  runs what it finds there, so the folder must be trusted);
* lowers JAX's thresholds (``jax_persistent_cache_min_compile_time_secs`` to
  :data:`MIN_COMPILE_TIME_SECS`, ``jax_persistent_cache_min_entry_size_bytes`` to
  :data:`MIN_ENTRY_SIZE_BYTES`) unless their ``JAX_PERSISTENT_CACHE_*`` variables are set.

Settings (``config.compilation_cache_dir`` for training; eval, upscale and the demo use ``"auto"``):

* ``"auto"`` (the default): a folder already given to JAX (``JAX_COMPILATION_CACHE_DIR`` or
  ``jax.config``) is kept; otherwise the folder named by ``EDSR_JAX_COMPILATION_CACHE`` when it
  holds a path, else the per-user folder.
* a folder (local or ``gs://``): that folder.
* ``""``: edsr-jax sets nothing (a cache the user configured for JAX itself still works).
* ``EDSR_JAX_COMPILATION_CACHE=0`` (or ``off``, ``false``, ``no``) turns edsr-jax's cache off
  whatever the setting.

Several processes may share the folder (jaxlib 0.10.2, checked on CPU): two runs started at once
on an empty folder both finish and leave complete entries; JAX writes only from process 0 of a
multi-host run (the others read what it wrote, so on a pod the folder must be shared for them to
profit). JAX writes an entry in place, not atomically: an entry that cannot be read (one being
written, or cut short by a kill) is compiled again with a warning ("Error reading persistent
compilation cache entry"), and a cut-short one is never rewritten, so that warning then comes at
every start until the folder is deleted (deleting it is always safe). The folder is not
size-bounded; JAX's own bound (``JAX_COMPILATION_CACHE_MAX_SIZE``) is left off, as in jaxlib
0.10.2 one entry without its ``-atime`` file makes every later write fail (jax-ml/jax#39880).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Environment variable: a folder for the "auto" setting, or 0/off/false/no to turn the cache off.
ENV = "EDSR_JAX_COMPILATION_CACHE"
# The setting that picks the folder itself (the default of config.compilation_cache_dir).
AUTO = "auto"
# Values of ENV that turn the cache off.
OFF_VALUES = ("0", "off", "false", "no")
# Cache every program that took this long to compile (loading one takes 1-10 ms): on a 2-core CPU
# the initialiser, the step and validation's programs take 0.03-1 s each (test config); the
# eager one-operation programs (about 0.01 s) are left out.
MIN_COMPILE_TIME_SECS = 0.02
# No minimum entry size (the small programs of the test config are a few hundred kB).
MIN_ENTRY_SIZE_BYTES = -1
# JAX options set by enable() with the environment variable that, when set, keeps the user's value.
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
    """Turns the persistent compilation cache on in this process for ``setting``.

    Call it before the first compilation (JAX opens the cache once, at its first compile).

    Args:
      setting: ``"auto"``, a folder, or ``""`` (see the module docstring).
      environ: the environment to read (default ``os.environ``).

    Returns:
      The folder in use, or None when edsr-jax leaves the cache alone.
    """
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
