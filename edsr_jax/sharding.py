"""Device mesh, shardings and global batches for data-parallel training with ``jit``.

One mesh axis, ``data``, spans every device of every process. Parameters, optimizer state and the
step are replicated; a batch is split along its first axis. Each process feeds only its own share
of the global batch (``global batch / process count`` examples), which
:func:`make_global_batch` stitches into one global ``jax.Array``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from edsr_jax.errors import UserError

# The one mesh axis: data parallelism over all devices.
DATA_AXIS = "data"
# Environment variables that ask for jax.distributed.initialize() (set by the user or a launcher).
DISTRIBUTED_ENV = ("EDSR_JAX_DISTRIBUTED", "JAX_COORDINATOR_ADDRESS")


def maybe_initialize_distributed(requested: bool = False) -> bool:
    """Calls ``jax.distributed.initialize()`` when asked by the config or the environment.

    Args:
      requested: ``config.distributed``.

    Returns:
      Whether the distributed runtime was initialised by this call.
    """
    wanted = requested or any(os.environ.get(k, "").strip() not in ("", "0") for k in DISTRIBUTED_ENV)
    if not wanted or jax.distributed.is_initialized():
        return False
    jax.distributed.initialize()
    return True


def create_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all devices of all processes) with axis ``data``."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of parameters, optimizer state and scalars: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: its first (example) axis split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, process_count: int | None = None) -> int:
    """Checks that the global batch splits evenly; returns the per-process batch size.

    Args:
      global_batch: ``config.batch_size``, summed over all processes and devices.
      mesh: the training mesh.
      process_count: number of processes (default ``jax.process_count()``).

    Returns:
      The number of examples each process feeds per step.

    Raises:
      ValueError: when the global batch is not a positive multiple of the device count.
    """
    n_dev = mesh.devices.size
    n_proc = jax.process_count() if process_count is None else process_count
    if global_batch <= 0 or global_batch % n_dev:
        suggestion = max(n_dev, round(global_batch / n_dev) * n_dev)
        raise ValueError(
            f"batch_size={global_batch} must be a positive multiple of the number of devices "
            f"({n_dev} across {n_proc} process(es)); e.g. --config.batch_size={suggestion}"
        )
    return global_batch // n_proc


def make_global_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict:
    """Turns this process's share of a batch into global arrays split over ``data``.

    Args:
      batch: numpy arrays whose first axis holds this process's examples; scalar entries
        (e.g. the Python int ``scale``) pass through unchanged.
      mesh: the training mesh.

    Returns:
      The same keys; arrays become ``jax.Array`` with global first axis
      ``local batch * process count``.

    Raises:
      UserError: when the global batch does not split evenly over the mesh's devices.
    """
    sharding = batch_sharding(mesh)
    n_proc = jax.process_count()
    n_dev = mesh.shape[DATA_AXIS]
    out = {}
    for key, value in batch.items():
        if np.ndim(value) == 0:
            out[key] = value
            continue
        global_shape = (value.shape[0] * n_proc, *value.shape[1:])
        if global_shape[0] % n_dev:
            raise UserError(
                f"global batch {global_shape[0]} ({key!r}: {value.shape[0]} per process x {n_proc} "
                f"process(es)) is not divisible by the {n_dev} devices of mesh axis {DATA_AXIS!r}"
            )
        out[key] = jax.make_array_from_process_local_data(sharding, np.asarray(value), global_shape)
    return out
