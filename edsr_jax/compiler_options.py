"""XLA options for each program edsr-jax compiles, passed to ``jax.jit(compiler_options=...)``.

Never ``XLA_FLAGS``, so a user's programs compile as without edsr-jax; a user's ``XLA_FLAGS`` wins.
CPU convolution routing: RESULTS.md "CPU convolution routing per compiled program".
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

# XLA's list of the op kinds XLA:CPU gives to YNNPACK; empty: XLA's own kernels for everything.
YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
TRAIN, INFER = "train", "infer"
PROGRAM_KINDS = (TRAIN, INFER)


def _mentioned(flags: str, name: str) -> bool:
    """Whether ``--name``, ``--name=...`` or ``--noname`` appears in an ``XLA_FLAGS`` string."""
    return any(token.lstrip("-").split("=", 1)[0] in (name, f"no{name}") for token in flags.split())


@functools.cache
def cpu_has_avx512(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this machine's CPU has AVX-512F (from ``/proc/cpuinfo``; False elsewhere)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


def xla_kernels_for(kind: str, avx512: bool) -> bool:
    """Whether a CPU program of ``kind`` runs its convolutions on XLA's own kernels (else YNNPACK)."""
    if kind not in PROGRAM_KINDS:
        raise ValueError(f"kind must be one of {PROGRAM_KINDS}, got {kind!r}")
    return kind == TRAIN or not avx512


def for_program(kind: str, platform: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``compiler_options`` of a ``"train"`` or ``"infer"`` program on ``platform`` ({} on GPU/TPU)."""
    env = os.environ if environ is None else environ
    if platform != "cpu" or _mentioned(env.get("XLA_FLAGS", ""), YNN_FUSION_TYPE):
        return {}
    return {YNN_FUSION_TYPE: ""} if xla_kernels_for(kind, cpu_has_avx512()) else {}


def platform_of(devices) -> str:
    """The platform of ``devices`` (a mesh's or a list), or of JAX's default backend when empty."""
    import jax

    flat = list(getattr(devices, "flat", devices) or ())
    return flat[0].platform if flat else jax.default_backend()
