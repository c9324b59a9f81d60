"""Where a run's files live: local paths, or ``gs://`` URLs for workdirs, models and TFDS data.

:func:`location` is the one place a user's path becomes what the libraries get: local paths made
absolute (Orbax misreads relative ones), ``gs://`` URLs checked to be reachable.
"""

from __future__ import annotations

import importlib.util
import os

from edsr_jax.errors import UserError

# URL schemes, each with the packages of which one lets etils.epath reach it.
URL_SCHEMES = {"gs": ("gcsfs", "tensorflow")}
GCS_INSTALL = "pip install 'edsr-jax[gcs]'"


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return "://" in os.fspath(path)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def location(path: str | os.PathLike, field: str, *, local_only: bool = False) -> str:
    """``path`` absolute if local, a checked ``gs://`` URL otherwise; ``field`` names it in messages.

    Raises:
      UserError: a URL where ``local_only``, another scheme, or no gs:// client installed.
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
