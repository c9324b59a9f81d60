"""edsr-jax: EDSR and MDSR super-resolution in JAX/Flax, exact to the paper.

Importing the package changes nothing in the process (no environment variables, JAX settings or
hooks); the ``edsr-jax`` command sets up its own process (:mod:`edsr_jax.cli`). The folders are the
architecture: ``models/`` (Flax modules), ``imaging/`` (resize, metrics, image files), ``data/``
(images to batches), ``checkpoint/`` (everything on disk that holds parameters), ``interop/``
(other frameworks' files), ``apps/`` (the demo, upscaling files) and ``cli/`` (the command line);
``sharding``, ``optim``, ``train``, ``inference``, ``evaluate`` and ``writers`` are the core.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import edsr_jax` stays light (no Orbax import until it is needed).
    if name in ("load_model", "load_pretrained"):  # (a path, or a published model's name)
        from edsr_jax.interop import pretrained

        return getattr(pretrained, name)
    raise AttributeError(f"module 'edsr_jax' has no attribute {name!r}")
