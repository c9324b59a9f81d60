"""Everything on disk that holds parameters, in one home (no import cycle inside).

``layout.py``: folder and file names, the one ``model.json`` reader and writer, ``prepare_workdir``.
``exported.py``: ``save_model`` / ``load_model`` and parameter checks. ``manager.py``: the Orbax
manager of a training workdir (save, restore, completeness, best step; ``preemption.py``: its
guard). ``late_results.py``: quiet handling of what a failed Orbax read leaves behind.
"""

__all__ = ["load_model", "save_model"]


def __getattr__(name):
    # Lazy, so that importing a light module of this folder does not import Orbax.
    if name in __all__:
        from edsr_jax.checkpoint import exported

        return getattr(exported, name)
    raise AttributeError(f"module 'edsr_jax.checkpoint' has no attribute {name!r}")
