"""Loading a script of the repository (experiments/...) as a module, without touching sys.path."""

import importlib.util
import os

from support.paths import ROOT


def load_script(relative_path: str):
    """The module of ``ROOT/relative_path`` (e.g. ``experiments/perf/fma_peak.py``), executed fresh."""
    path = os.path.join(ROOT, relative_path)
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
