"""``edsr-jax info``: package versions, JAX backend and devices, XLA flags in effect."""

from __future__ import annotations

import importlib.metadata
import os
import platform

HELP = "show versions, JAX backend and devices"

# Distributions whose versions `info` reports (missing ones print as "not installed").
PACKAGES = (
    "edsr-jax",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "tensorflow-cpu",
    "tensorflow",
    "tensorflow-datasets",
    "grain",
    "ml-collections",
    "torch",
    "scikit-image",
    "matplotlib",
)


def add_arguments(parser) -> None:
    del parser  # no options


def run(args) -> int:
    del args
    import jax

    print(f"{'python':<20}{platform.python_version()} ({platform.machine()}, {platform.system()})")
    for name in PACKAGES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name:<20}{version}")
    print(f"{'backend':<20}{jax.default_backend()}")
    print(f"{'processes':<20}{jax.process_count()} (this is {jax.process_index()})")
    devices = jax.devices()
    print(f"{'devices':<20}{len(devices)}: " + ", ".join(sorted({d.device_kind for d in devices})))
    print(f"{'XLA_FLAGS':<20}{os.environ.get('XLA_FLAGS', '')!r}")
    from edsr_jax import compiler_options

    for kind in compiler_options.PROGRAM_KINDS:
        options = compiler_options.for_program(kind, jax.default_backend())
        print(f"{kind + ' programs':<20}compiler options {options or '{} (XLA defaults)'}")
    return 0
