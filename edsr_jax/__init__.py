"""edsr-jax: EDSR and MDSR super-resolution in JAX/Flax.

Importing the package changes nothing in the process; the ``edsr-jax`` command sets up its own.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `import edsr_jax` does not import Orbax.
    if name in ("load_model", "load_pretrained"):
        from edsr_jax.interop import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'edsr_jax' has no attribute {name!r}")
