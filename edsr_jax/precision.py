"""Numerical precision of training: a named policy per run (``config.precision``).

* ``fp32``: float32 everywhere, convolutions at full float32 precision on every platform (JAX's
  ``"highest"``): what the paper and the official code compute.
* ``tf32``: float32 storage, convolutions at XLA's TensorFloat-32 setting: TF32 tensor cores on
  NVIDIA Ampere and later, three bf16 passes on TPUs, full float32 on CPUs.
* ``bf16``: mixed precision: bfloat16 activations and convolutions; float32 parameters, Adam
  state, gradients' accumulation into them, and the loss.
* ``auto`` (the default): ``bf16`` on GPUs and TPUs, ``fp32`` on CPUs (whose XLA backend has no
  fast bfloat16 convolutions). Its cost in PSNR: ``experiments/perf/RESULTS.md``, "Half precision".

The policy a run trained with is printed at start and recorded in ``model.json``.
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
    """What a precision name computes.

    Attributes:
      name: ``fp32``, ``tf32`` or ``bf16``.
      compute_dtype: the dtype of activations and convolution inputs.
      matmul_precision: JAX's ``default_matmul_precision`` inside the step (None: JAX's default).
      description: one line for the start-up log.
    """

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
    """The policy ``name`` means on ``platform`` (``"cpu"``, ``"gpu"``, ``"tpu"``).

    Raises:
      ValueError: an unknown name.
    """
    if name == AUTO:
        name = "fp32" if platform == "cpu" else "bf16"
    if name not in POLICIES:
        raise ValueError(f"config.precision must be one of {', '.join(NAMES)}, got {name!r}")
    return POLICIES[name]


@contextlib.contextmanager
def matmul_precision(policy: Policy) -> Iterator[None]:
    """Traces convolutions and matmuls at the policy's precision (use inside the traced function)."""
    if policy.matmul_precision is None:
        yield
        return
    with jax.default_matmul_precision(policy.matmul_precision):
        yield
