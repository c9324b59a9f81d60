"""XLA settings that edsr-jax applies by default, before any JAX backend starts.

On x86 CPUs, XLA's default routing of convolutions through its YNNPACK fusion makes the backward
convolutions of EDSR about 4x slower than XLA's own kernels (see ``experiments/RESULTS.md``).
``import edsr_jax`` therefore adds ``--xla_cpu_experimental_ynn_fusion_type=`` to ``XLA_FLAGS``
unless the user already set that flag. Opt out with ``EDSR_JAX_NO_XLA_DEFAULTS=1``.

The flags only take effect if no JAX backend has started yet (XLA reads ``XLA_FLAGS`` once, when
the first backend is created): import ``edsr_jax`` before running any JAX computation.
"""

from __future__ import annotations

import os

# Environment variable that disables every default below.
OPT_OUT_ENV = "EDSR_JAX_NO_XLA_DEFAULTS"

# (flag name, value): each is added only when XLA_FLAGS does not already mention the flag.
DEFAULT_XLA_FLAGS: tuple[tuple[str, str], ...] = (
    # Hand CPU convolutions back to XLA's own kernels (empty fusion-type list for YNNPACK).
    ("xla_cpu_experimental_ynn_fusion_type", ""),
)


def apply(environ: dict | None = None) -> list[str]:
    """Adds the default flags to ``XLA_FLAGS`` in ``environ``; returns the flags it added."""
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "").strip() not in ("", "0"):
        return []
    current = env.get("XLA_FLAGS", "")
    added = [f"--{name}={value}" for name, value in DEFAULT_XLA_FLAGS if f"--{name}" not in current]
    if added:
        env["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
