"""Device mesh, shardings and global batches for data-parallel training with ``jit``.

One mesh axis, ``data``, in process-major order, so each process feeds one contiguous block of the
global batch. Parameters and optimizer state are replicated; batches are split along examples.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from edsr_jax.errors import UserError

# The one mesh axis: data parallelism over all devices.
DATA_AXIS = "data"
# 1: call jax.distributed.initialize() (any launcher); 0: never.
DISTRIBUTED_ENV = "EDSR_JAX_DISTRIBUTED"
_FALSE = ("0", "false", "no", "off")


def _count(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ.get(name, "1"))
    except ValueError:
        return 1


def detect_launcher(environ: Mapping[str, str] | None = None) -> str | None:
    """The launcher whose variables ask for several processes, or None.

    A Cloud TPU VM slice sets none of them: set ``config.distributed`` there.
    """
    env = os.environ if environ is None else environ
    flag = env.get(DISTRIBUTED_ENV, "").strip().lower()
    if flag in _FALSE:
        return None
    if flag:
        return DISTRIBUTED_ENV
    if env.get("JAX_COORDINATOR_ADDRESS", "").strip():
        return "JAX_COORDINATOR_ADDRESS"
    if _count(env, "SLURM_NTASKS") > 1 and "SLURM_STEP_NODELIST" in env and "SLURM_PROCID" in env:
        return "SLURM"
    if _count(env, "OMPI_COMM_WORLD_SIZE") > 1:
        return "Open MPI"
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if "," in hosts:
        return "Cloud TPU"
    return None


def maybe_initialize_distributed(
    requested: bool = False,
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> bool:
    """Calls ``jax.distributed.initialize()`` when the arguments, config or environment ask for it.

    Call it before anything touches devices. Returns whether it initialised; UserError if it cannot.
    """
    explicit = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
        "local_device_ids": list(local_device_ids) if local_device_ids is not None else None,
    }
    launcher = detect_launcher()
    wanted = requested or launcher is not None or any(v is not None for v in explicit.values())
    if not wanted or jax.distributed.is_initialized():
        return False
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise UserError(
            f"process_id must be in [0, {num_processes}) for num_processes={num_processes}, got {process_id}"
        )
    try:
        jax.distributed.initialize(**explicit)
    except ValueError as e:
        raise UserError(
            f"cannot start the multi-process runtime ({e}); detected launcher: {launcher or 'none'}. "
            "Pass coordinator_address (HOST:PORT), num_processes and process_id, or run under "
            "SLURM/Open MPI/Cloud TPU"
        ) from None
    return True


def data_axis_order(devices: Sequence) -> list:
    """``devices`` in the order of the ``data`` axis: slice by slice, then process by process.

    ``jax.make_mesh``'s interconnect order interleaves a slice's hosts, which would break each
    process's contiguous block of rows.
    """
    slices: dict[int, list] = {}
    for device in devices:
        slices.setdefault(getattr(device, "slice_index", 0), []).append(device)
    ordered = []
    for index in sorted(slices):
        members = slices[index]
        interconnect = mesh_utils.create_device_mesh((len(members),), members).flat
        ordered.extend(sorted(interconnect, key=lambda d: d.process_index))
    return ordered


def create_mesh(devices: Sequence | None = None) -> Mesh:
    """A 1-D mesh with axis ``data`` over ``devices`` (default: all), in :func:`data_axis_order`."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(data_axis_order(devices), dtype=object), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of parameters, optimizer state and scalars: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: its first (example) axis split over ``data``."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of K stacked batches (steps first): their second axis split."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, process_count: int | None = None) -> int:
    """Examples per process per step of a global batch; UserError unless a multiple of the device count."""
    n_dev = mesh.devices.size
    n_proc = jax.process_count() if process_count is None else process_count
    if global_batch <= 0 or global_batch % n_dev:
        suggestion = max(n_dev, round(global_batch / n_dev) * n_dev)
        raise UserError(
            f"config.batch_size={global_batch} must be a positive multiple of the number of devices "
            f"({n_dev} across {n_proc} process(es)); e.g. config.batch_size={suggestion}"
        )
    return global_batch // n_proc


def process_rows(global_batch: int, mesh: Mesh) -> tuple[int, int]:
    """The rows ``[start, stop)`` of a global batch this process feeds, read off the sharding.

    Raises:
      UserError: the batch does not split, or this process's shards are not contiguous.
    """
    check_batch_size(global_batch, mesh)
    spans = sorted(
        (index[0].start or 0, index[0].stop if index[0].stop is not None else global_batch)
        for index in batch_sharding(mesh).addressable_devices_indices_map((global_batch,)).values()
    )
    for (_, stop), (start, _) in zip(spans, spans[1:], strict=False):
        if start != stop:
            raise UserError(
                f"this process's devices hold rows {spans} of the batch, not one contiguous block"
            )
    return spans[0][0], spans[-1][1]


def make_global_batch(
    batch: Mapping[str, np.ndarray], mesh: Mesh, *, stacked: bool = False, replicated_keys=()
) -> dict:
    """This process's share of a batch as global arrays split over ``data``.

    With ``stacked`` the example axis is the second; ``replicated_keys`` are held whole by every process.
    """
    sharding = stacked_batch_sharding(mesh) if stacked else batch_sharding(mesh)
    axis = 1 if stacked else 0
    n_proc = jax.process_count()
    out = {}
    for key, value in batch.items():
        if np.ndim(value) == 0:
            out[key] = value
            continue
        value = np.asarray(value)
        if key in replicated_keys:
            out[key] = jax.make_array_from_process_local_data(replicated(mesh), value, value.shape)
            continue
        global_shape = (*value.shape[:axis], value.shape[axis] * n_proc, *value.shape[axis + 1 :])
        out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out


def prefetch_to_device(
    iterator: Iterator[dict], size: int, mesh: Mesh, **global_batch_options
) -> Iterator[dict]:
    """:func:`make_global_batch` of each batch, ``size`` kept in flight (transfers overlap compute)."""
    queue = collections.deque()
    for batch in iterator:
        queue.append(make_global_batch(batch, mesh, **global_batch_options))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()
