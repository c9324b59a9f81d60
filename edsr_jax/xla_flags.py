"""XLA settings that edsr-jax applies by default, before any JAX backend starts.

What and why:

* ``--xla_cpu_experimental_ynn_fusion_type=`` (an empty list of YNNPACK fusion types). Since
  jaxlib 0.10.2, XLA:CPU hands convolutions (and some reductions) to YNNPACK fusions; on x86 CPUs
  their backward convolutions are several times slower than XLA's own (Eigen) kernels. Measured on
  a 2-core AMD EPYC (Zen 1): an EDSR baseline x2 training step, batch 16 of 48x48, 20.4 s stock vs
  5.25 s with the flag; inference 3.58 s vs 2.87 s (``experiments/perf/RESULTS.md``, "Model speed").
  The empty list also avoids a known YNNPACK crash/hang on high-rank broadcasts in jaxlib 0.10.2
  and 0.11 (jax-ml/jax#39257). The flag only changes the CPU backend; GPU/TPU are unaffected.

Other XLA:CPU settings were measured and left alone, because none beat the above on these
convolutions: ``xla_cpu_enable_fast_math``, ``xla_cpu_prefer_vector_width=256``,
``xla_cpu_use_onednn``, ``xla_cpu_use_fusion_emitters=false``,
``xla_cpu_enable_concurrency_optimized_scheduler``, ``xla_cpu_multi_thread_eigen=false``
(see RESULTS.md for the numbers).

Rules:

* A flag is added only when ``XLA_FLAGS`` does not mention it already: a user's setting always
  wins, whatever its value (e.g. ``--xla_cpu_experimental_ynn_fusion_type=-reduce``).
* Opt out of every default with ``EDSR_JAX_NO_XLA_DEFAULTS=1`` (any value but ``""``/``"0"``).
* A flag is added only for jaxlib versions known to parse it (an unknown flag in ``XLA_FLAGS``
  aborts the process when the backend starts).
* XLA reads ``XLA_FLAGS`` once, when the first backend is created: import ``edsr_jax`` before
  running any JAX computation. :func:`apply` warns when it is too late for its flags to act.
"""

from __future__ import annotations

import os
import sys
import warnings

# Environment variable that disables every default below.
OPT_OUT_ENV = "EDSR_JAX_NO_XLA_DEFAULTS"

# (flag name, value, oldest jaxlib (major, minor, patch) that parses the flag).
DEFAULT_XLA_FLAGS: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    # Hand CPU convolutions back to XLA's own kernels (empty YNNPACK fusion-type list).
    ("xla_cpu_experimental_ynn_fusion_type", "", (0, 10, 1)),
)


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"0.10.2"`` -> ``(0, 10, 2)``; suffixes such as ``.dev2026`` or ``rc1`` are ignored."""
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def installed_jaxlib_version() -> str | None:
    """The installed jaxlib version string (without importing jaxlib), or None if unknown."""
    try:
        from importlib import metadata

        return metadata.version("jaxlib")
    except Exception:  # not installed as a distribution (e.g. a source build)
        return None


def _mentioned(flags: str, name: str) -> bool:
    """Whether ``--name`` (as ``--name``, ``--name=...``) or ``--noname`` appears in ``flags``."""
    for token in flags.split():
        key = token.lstrip("-").split("=", 1)[0]
        if key in (name, f"no{name}"):
            return True
    return False


def backend_started() -> bool:
    """Whether a JAX backend already exists in this process (then new XLA flags are ignored)."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(getattr(xla_bridge, "_backends", {}))
    except Exception:  # private API moved: assume not started
        return False


def apply(environ: dict | None = None, jaxlib_version: str | None = None) -> list[str]:
    """Adds the default flags to ``XLA_FLAGS`` in ``environ``.

    Args:
      environ: the environment to edit (default ``os.environ``).
      jaxlib_version: the jaxlib version to assume (default: the installed one; when it cannot be
        found, the flags are added).

    Returns:
      The flags added (``[]`` when opted out, already set by the user, or not supported).
    """
    env = os.environ if environ is None else environ
    if env.get(OPT_OUT_ENV, "").strip() not in ("", "0"):
        return []
    version = installed_jaxlib_version() if jaxlib_version is None else jaxlib_version
    have = _version_tuple(version) if version else None
    current = env.get("XLA_FLAGS", "")
    added = [
        f"--{name}={value}"
        for name, value, oldest in DEFAULT_XLA_FLAGS
        if not _mentioned(current, name) and (have is None or have >= oldest)
    ]
    if added:
        env["XLA_FLAGS"] = " ".join([current, *added]).strip()
        if environ is None and backend_started():
            warnings.warn(
                f"edsr_jax was imported after the JAX backend started, so its XLA defaults {added} "
                "do not apply in this process (CPU convolutions may be several times slower): "
                "import edsr_jax before running JAX computations",
                RuntimeWarning,
                stacklevel=3,
            )
    return added
