"""Where a run's files live: local paths, or ``gs://`` URLs for workdirs, models and TFDS data.

:func:`location` is the one place a path the user gave becomes the string the libraries get: a
local path made absolute (Orbax misreads relative ones), or a ``gs://`` URL kept as it is once this
Python can reach it (``etils.epath`` needs TensorFlow or ``gcsfs``; TensorStore and ArrayRecord
bring their own GCS clients). Other schemes are refused: those clients reach none but ``gs://``.
"""

from __future__ import annotations

import importlib.util
import os

from edsr_jax.errors import UserError

# The URL schemes a path may use, each with the packages of which one lets etils.epath reach it.
URL_SCHEMES = {"gs": ("gcsfs", "tensorflow")}
# What installs the client for gs:// (named in the message when it is missing).
GCS_INSTALL = "pip install 'edsr-jax[gcs]'"


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in os.fspath(path)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def location(path: str | os.PathLike, field: str, *, local_only: bool = False) -> str:
    """``path`` as every library should get it: absolute if local, a checked ``gs://`` URL otherwise.

    ``field`` names the argument or config field in messages; ``local_only``: its reader opens
    local files only (image folders, the image cache).

    Raises:
      UserError: a URL where only local paths work, another scheme, or no gs:// client installed.
    """
    path = os.fspath(path)
    if not is_url(path):
        return os.path.abspath(path)
    scheme = path.partition("://")[0]
    if local_only:
        raise UserError(f"{field}={path!r} must be a local path: its reader opens local files only")
    if scheme not in URL_SCHEMES:
        supported = ", ".join(f"{s}://" for s in URL_SCHEMES)
        raise UserError(f"{field}={path!r}: URLs may be {supported} only (or give a local path)")
    packages = URL_SCHEMES[scheme]
    if not any(_installed(p) for p in packages):
        raise UserError(
            f"{field}={path!r} needs {' or '.join(packages)} to reach {scheme}:// from Python: {GCS_INSTALL}"
        )
    return path
