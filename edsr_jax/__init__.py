"""edsr-jax: EDSR and MDSR super-resolution in JAX/Flax, exact to the paper.

``import edsr_jax`` applies fast XLA CPU defaults before any JAX backend starts (see
``edsr_jax._xla_defaults``; opt out with ``EDSR_JAX_NO_XLA_DEFAULTS=1``).
"""

from edsr_jax import _xla_defaults

_xla_defaults.apply()

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import edsr_jax` stays light (no Orbax import until it is needed).
    if name == "load_model":
        from edsr_jax.checkpoint import load_model

        return load_model
    raise AttributeError(f"module 'edsr_jax' has no attribute {name!r}")
