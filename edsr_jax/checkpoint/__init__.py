"""Everything on disk that holds parameters, in one home (no import cycle inside).

``layout.py``: folder and file names, the one ``model.json`` reader and writer, ``prepare_workdir``.
``exported.py``: ``save_model`` / ``load_model`` and parameter checks. ``manager.py``: the Orbax
manager of a training workdir (save, restore, completeness, best step; ``preemption.py``: its
guard). ``late_results.py``: quiet handling of what a failed Orbax read leaves behind.
"""

from edsr_jax.checkpoint.exported import load_model, save_model

__all__ = ["load_model", "save_model"]
