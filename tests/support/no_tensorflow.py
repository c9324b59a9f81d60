"""Make TensorFlow unfindable in this process, as on a machine where it is not installed.

Every finder on ``sys.meta_path`` is wrapped so that ``tensorflow`` and its submodules are not
found: ``import tensorflow`` raises ``ModuleNotFoundError`` and ``importlib.util.find_spec``
returns None (libraries that probe for TensorFlow see it as absent, not as broken).
"""

import sys

HIDDEN = "tensorflow"


class _Hiding:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == HIDDEN:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)


def hide_tensorflow() -> None:
    """Hides TensorFlow from every later import (call before anything imports it)."""
    if HIDDEN in sys.modules:
        raise RuntimeError("tensorflow is already imported in this process")
    sys.meta_path[:] = [f if isinstance(f, _Hiding) else _Hiding(f) for f in sys.meta_path]
