"""Optional dependencies: features outside training, evaluation and the models need an extra.

``pip install 'edsr-jax[apps]'`` adds scikit-image (the demo's sample photographs) and matplotlib
(the plot of ``eval --curve``); :func:`require` imports one of them or says which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edsr_jax.errors import UserError

# Import name -> the package pip installs it from, where the two differ.
PACKAGE_OF = {"skimage": "scikit-image"}


def require(module: str, feature: str, extra: str = "apps") -> ModuleType:
    """``module`` imported, or a UserError naming ``feature``, the package and the extra.

    Raises:
      UserError: the module (or the package it belongs to) is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        package = PACKAGE_OF.get(top, top)
        raise UserError(f"{feature} needs the {package} package: pip install 'edsr-jax[{extra}]'") from None
