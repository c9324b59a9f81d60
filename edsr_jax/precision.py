"""Numerical precision of training: a named policy per run (``config.precision``).

``fp32`` computes as the paper did; ``bf16`` keeps float32 parameters, Adam state and loss; ``auto``
is ``bf16`` on GPUs/TPUs and ``fp32`` on CPUs. Its cost in PSNR: RESULTS.md "Precision: bf16
against fp32 training" (-0.10 dB over 5 seeds, within noise; use ``fp32`` to reproduce the paper).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp

AUTO = "auto"


@dataclasses.dataclass(frozen=True)
class Policy:
    """What a precision name computes (``matmul_precision`` None: JAX's default)."""

    name: str
    compute_dtype: jnp.dtype
    matmul_precision: str | None
    description: str


POLICIES = {
    "fp32": Policy("fp32", jnp.float32, "float32", "float32 convolutions at full precision"),
    "tf32": Policy(
        "tf32",
        jnp.float32,
        "tensorfloat32",
        "float32 storage, TensorFloat-32 convolutions (full float32 on CPUs)",
    ),
    "bf16": Policy(
        "bf16",
        jnp.bfloat16,
        None,
        "bfloat16 activations and convolutions; float32 parameters, Adam state and loss",
    ),
}
NAMES = (AUTO, *POLICIES)


def resolve(name: str, platform: str) -> Policy:
    """The policy ``name`` means on ``platform`` (``cpu``, ``gpu``, ``tpu``); ValueError if unknown."""
    if name == AUTO:
        name = "fp32" if platform == "cpu" else "bf16"
    if name not in POLICIES:
        raise ValueError(f"config.precision must be one of {', '.join(NAMES)}, got {name!r}")
    return POLICIES[name]


@contextlib.contextmanager
def matmul_precision(policy: Policy) -> Iterator[None]:
    """Traces convolutions and matmuls at the policy's precision (inside the traced function)."""
    if policy.matmul_precision is None:
        yield
        return
    with jax.default_matmul_precision(policy.matmul_precision):
        yield
