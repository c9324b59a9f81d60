"""Model-loading flags of ``eval``, ``upscale`` and ``export``: ``--dtype`` (the computation dtype;
the parameters stay float32) and ``--weights`` (a training run's EMA or raw weights)."""

from __future__ import annotations

DTYPE_NAMES = ("float32", "bfloat16", "float16")


def add_dtype_flag(parser) -> None:
    parser.add_argument(
        "--dtype",
        choices=DTYPE_NAMES,
        default="float32",
        help="computation dtype of the model (parameters stay float32)",
    )


def add_weights_flag(parser) -> None:
    parser.add_argument(
        "--weights",
        choices=("auto", "ema", "raw"),
        default="auto",
        help="for a training workdir: its EMA of the weights (config.ema_decay > 0) or the raw ones; "
        "auto: the EMA when the run kept one",
    )


def dtype_of(name: str):
    """The JAX dtype ``load_model(dtype=...)`` takes for ``name`` (None for float32: the model's own)."""
    import jax.numpy as jnp

    return {"float32": None, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[name]
