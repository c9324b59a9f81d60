"""Device mesh, shardings and global batches for data-parallel training with ``jit``.

One mesh axis, ``data``, spans every device of every process and slice, in process-major order
(:func:`data_axis_order`). Parameters, optimizer state and the step are replicated; a batch is
split along its first axis. Each process feeds only its own share of the global batch
(``global batch / process count`` examples, checked once by :func:`check_batch_size`), one
contiguous block of rows (:func:`process_rows`), which :func:`make_global_batch` stitches into one
global ``jax.Array``; :func:`prefetch_to_device` keeps a few of them in flight.
:func:`maybe_initialize_distributed` starts the multi-process runtime when a launcher asks for it.
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
# Set to 1 to call jax.distributed.initialize() (any launcher), or to 0 to never call it.
DISTRIBUTED_ENV = "EDSR_JAX_DISTRIBUTED"
_FALSE = ("0", "false", "no", "off")


def _count(environ: Mapping[str, str], name: str) -> int:
    try:
        return int(environ.get(name, "1"))
    except ValueError:
        return 1


def detect_launcher(environ: Mapping[str, str] | None = None) -> str | None:
    """The launcher whose variables ask for several processes, or None for a one-process run.

    Recognised (these are what ``jax.distributed.initialize()`` reads to fill in its arguments):
    ``EDSR_JAX_DISTRIBUTED=1``; ``JAX_COORDINATOR_ADDRESS``; SLURM (``srun`` with more than one
    task: ``SLURM_NTASKS > 1`` inside a step); Open MPI (``OMPI_COMM_WORLD_SIZE > 1``); Cloud TPU
    on GKE (``TPU_WORKER_HOSTNAMES`` or ``TPU_PROCESS_ADDRESSES`` listing several hosts). A Cloud
    TPU VM slice sets none of these: set ``config.distributed`` (or ``EDSR_JAX_DISTRIBUTED=1``) there.
    ``EDSR_JAX_DISTRIBUTED=0`` turns detection off.

    Args:
      environ: the environment (default ``os.environ``).

    Returns:
      A short name of the launcher, or None.
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
    """Calls ``jax.distributed.initialize()`` when asked by arguments, the config or the environment.

    Must run before anything touches JAX's devices. Arguments left as None are filled in by JAX
    from the environment (``JAX_COORDINATOR_ADDRESS``, ``JAX_LOCAL_DEVICE_IDS``, SLURM, Open MPI,
    Cloud TPU metadata).

    Args:
      requested: ``config.distributed`` (the command line's ``--distributed``).
      coordinator_address: ``HOST:PORT`` of process 0's coordinator.
      num_processes: number of processes.
      process_id: this process, in ``[0, num_processes)``.
      local_device_ids: the local accelerators this process uses (default: all it sees).

    Returns:
      Whether the distributed runtime was initialised by this call.

    Raises:
      UserError: inconsistent explicit settings, or JAX could not work out the missing ones.
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
    except ValueError as e:  # JAX: "coordinator_address should be defined" and the like
        raise UserError(
            f"cannot start the multi-process runtime ({e}); detected launcher: {launcher or 'none'}. "
            "Pass coordinator_address (HOST:PORT), num_processes and process_id, or run under "
            "SLURM/Open MPI/Cloud TPU"
        ) from None
    return True


def data_axis_order(devices: Sequence) -> list:
    """``devices`` in the order of the ``data`` axis: slice by slice, then process by process.

    Each process feeds its rows of the global batch from its own input pipeline, so its devices
    must hold one contiguous block of rows, and the blocks follow the processes' order. JAX's
    interconnect order (``jax.make_mesh``: a ring or torus walk on TPU) interleaves the hosts of a
    slice, and ``jax.make_mesh`` refuses several slices. So each slice (``slice_index``, the DCN
    axis of a multislice run) is first put in JAX's order on its own, then sorted stably by
    ``process_index``: a host's devices keep their order relative to each other. Only device
    attributes are read (``platform``, ``device_kind``, ``coords``, ``core_on_chip``,
    ``process_index``, ``slice_index``), so stand-ins can drive it for any topology.

    Args:
      devices: every device the mesh spans, in any order.

    Returns:
      The same devices, process-major.
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
    """A 1-D mesh with axis ``data`` over ``devices`` (default: all devices of all processes).

    The devices are in :func:`data_axis_order`, whatever order they come in, so that every
    process's shards are one contiguous block of the batch on any TPU, GPU or CPU topology.
    """
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.array(data_axis_order(devices), dtype=object), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of parameters, optimizer state and scalars: a full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of a batch: its first (example) axis split over the ``data`` axis."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def stacked_batch_sharding(mesh: Mesh) -> NamedSharding:
    """The sharding of K stacked batches (steps first): their second (example) axis split."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def check_batch_size(global_batch: int, mesh: Mesh, process_count: int | None = None) -> int:
    """The one batch-size check: the global batch must split evenly over every device.

    Args:
      global_batch: ``config.batch_size``, summed over all processes and devices.
      mesh: the training mesh.
      process_count: number of processes (default ``jax.process_count()``).

    Returns:
      The number of examples each process feeds per step.

    Raises:
      UserError: the global batch is not a positive multiple of the device count (the message
        names both and the nearest batch size that works).
    """
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
    """The rows ``[start, stop)`` of a global batch that this process feeds (its devices' shards).

    Read off the batch sharding itself, so it holds for any device order of the mesh.

    Raises:
      UserError: the batch does not split over the devices (:func:`check_batch_size`), or this
        process's shards are not one contiguous block of rows.
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
    """Turns this process's share of a batch into global arrays split over ``data``.

    Args:
      batch: numpy arrays whose first axis (second with ``stacked``) holds this process's examples
        (as many as :func:`check_batch_size` returned); scalar entries (e.g. the Python int
        ``scale``) pass through unchanged.
      mesh: the training mesh.
      stacked: arrays are K stacked batches (steps first, :func:`stacked_batch_sharding`).
      replicated_keys: entries that every process holds whole (e.g. the steps' scale indices).

    Returns:
      The same keys; arrays become ``jax.Array`` whose example axis is ``local batch * process
      count`` long.
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
    """Keeps ``size`` global batches on their way to the devices (transfers overlap compute).

    Args:
      iterator: per-process numpy batches.
      size: batches kept in flight while the caller works on the current one.
      mesh: the device mesh (batches are split over its ``data`` axis).
      global_batch_options: :func:`make_global_batch`'s keywords.

    Returns:
      Iterator of :func:`make_global_batch` results, in order.
    """
    queue = collections.deque()
    for batch in iterator:
        queue.append(make_global_batch(batch, mesh, **global_batch_options))
        if len(queue) > size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()
