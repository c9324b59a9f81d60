"""Where a run's files live: local paths, or ``gs://`` URLs for workdirs, models and TFDS data.

:func:`location` is the one place a path the user gave becomes the string the libraries get: a
local path made absolute (Orbax misreads relative ones), or a ``gs://`` URL kept as it is once this
Python can reach it. Each library then reaches the bucket through its own client:

* ``etils.epath`` (``model.json``, the workdir lock, ``parameters.txt``, TensorBoard events,
  Orbax's folders and metadata, TFDS's dataset info): TensorFlow's file layer when TensorFlow is
  installed, else fsspec with ``gcsfs`` (the ``gcs`` and ``tpu`` extras install it);
* Orbax's arrays: TensorStore's own GCS driver; TFDS's ArrayRecord files: ArrayRecord's own GCS
  client. Both ship inside their wheels.

Credentials are Google's application default credentials (on a Cloud TPU VM: its service account).
Other URL schemes are refused with a message: TensorStore and ArrayRecord reach none but ``gs://``
here, and ``etils.epath`` fails on schemes it does not know (``memory://``, ``file://``) with a
``KeyError``.
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

    Args:
      path: what the user gave (``workdir``, ``config.data.data_dir``, a model directory...).
      field: the argument or config field it came from, for the message.
      local_only: the reader of ``path`` opens local files only (image folders, the decoded-image
        cache).

    Returns:
      The absolute local path, or the URL unchanged.

    Raises:
      UserError: a URL where only local paths work, a scheme other than ``gs://``, or ``gs://``
        without ``gcsfs`` (or TensorFlow) installed.
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
