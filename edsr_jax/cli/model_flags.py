"""Model-loading flags of ``eval``, ``upscale`` and ``export``: ``--model``, ``--dtype``, ``--weights``."""

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


def add_model_flag(group) -> None:
    """``--model NAME`` beside ``--checkpoint`` (in the same mutually exclusive ``group``)."""
    group.add_argument(
        "--model",
        metavar="NAME",
        help="a published model by name (edsr-jax models lists them): downloaded once, verified, cached",
    )


def checkpoint_path(args) -> str:
    """The model folder a command reads: ``--checkpoint``, or ``--model``'s (fetched on first use)."""
    if not getattr(args, "model", None):
        return args.checkpoint
    from edsr_jax.interop import pretrained

    return pretrained.fetch(args.model, progress=not getattr(args, "no_progress", False), log=print)


def checkpoint_or_model(value: str) -> str:
    """A ``--checkpoint``-like value (``--compare``) that may also be a published model's name."""
    from edsr_jax.interop import pretrained

    return pretrained.fetch(value, log=print) if pretrained.is_model_name(value) else value
