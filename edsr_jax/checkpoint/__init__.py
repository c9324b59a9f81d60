"""Everything on disk that holds parameters: layout, exported models, the training manager."""

__all__ = ["load_model", "save_model"]


def __getattr__(name):
    # Lazy: light modules of this folder do not import Orbax.
    if name in __all__:
        from edsr_jax.checkpoint import exported

        return getattr(exported, name)
    raise AttributeError(f"module 'edsr_jax.checkpoint' has no attribute {name!r}")
