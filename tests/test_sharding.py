"""Devices (edsr_jax.sharding): the mesh, the one batch-size check, global batches and device
prefetch, launcher detection and starting the multi-process runtime."""

import dataclasses
import random

import jax
import numpy as np
import pytest
from support.fake_tpu import TOPOLOGIES, tpu_slices

from edsr_jax import sharding
from edsr_jax.errors import UserError


def test_create_mesh_spans_the_devices_on_one_data_axis():
    mesh = sharding.create_mesh()
    assert mesh.axis_names == (sharding.DATA_AXIS,) and mesh.devices.size == len(jax.devices()) == 8
    two = sharding.create_mesh(jax.devices()[:2])
    assert two.devices.size == 2
    assert sharding.batch_sharding(two).spec == jax.sharding.PartitionSpec("data")
    assert sharding.replicated(two).spec == jax.sharding.PartitionSpec()


def row_blocks(devices, global_batch: int) -> dict[int, list[tuple[int, int]]]:
    """{process: its rows of the batch as merged ``[start, stop)`` blocks} for a 1-D ``data`` mesh
    in this device order (position ``i`` holds rows ``[i * b, (i + 1) * b)``)."""
    per_device = global_batch // len(devices)
    blocks: dict[int, list[tuple[int, int]]] = {}
    for i, device in enumerate(devices):
        start, stop = i * per_device, (i + 1) * per_device
        mine = blocks.setdefault(device.process_index, [])
        if mine and mine[-1][1] == start:
            mine[-1] = (mine[-1][0], stop)
        else:
            mine.append((start, stop))
    return blocks


def test_position_i_of_the_data_axis_holds_block_i_of_the_batch():
    # The rule row_blocks relies on, read off JAX's own sharding for a shuffled order.
    order = jax.devices()[::-1]
    random.Random(0).shuffle(order)
    mesh = jax.sharding.Mesh(np.array(order), (sharding.DATA_AXIS,))
    indices = sharding.batch_sharding(mesh).devices_indices_map((16,))
    assert [indices[d][0] for d in order] == [slice(2 * i, 2 * i + 2) for i in range(8)]
    assert row_blocks(order, 16) == {0: [(0, 16)]}


def interconnect_order(devices) -> list:
    """``jax.make_mesh``'s 1-D order, slice by slice (it refuses several slices at once)."""
    slices = sorted({d.slice_index for d in devices})
    return [
        d
        for s in slices
        for d in jax.make_mesh(
            (sum(d.slice_index == s for d in devices),),
            ("data",),
            devices=[d for d in devices if d.slice_index == s],
        ).devices.flat
    ]


@pytest.mark.parametrize(("name", "num_slices"), [*((name, 1) for name in TOPOLOGIES), ("v5litepod-16", 2)])
def test_each_host_of_a_tpu_slice_feeds_one_contiguous_block_in_process_order(name, num_slices):
    devices = tpu_slices(name, num_slices)
    processes = sorted({d.process_index for d in devices})
    torus = interconnect_order(devices)
    # What edsr-jax 0.1 built (jax.make_mesh): hosts whose rows are scattered over the batch, so
    # process_rows stopped the run at start-up.
    first_slice = [d for d in torus if d.slice_index == 0]
    assert any(len(blocks) > 1 for blocks in row_blocks(first_slice, 2 * len(first_slice)).values())
    if num_slices > 1:
        with pytest.raises((ValueError, AssertionError)):  # (several slices: coordinates repeat)
            jax.make_mesh((len(devices),), ("data",), devices=devices)
    shuffled = list(devices)
    random.Random(0).shuffle(shuffled)
    global_batch, meshes = 2 * len(devices), []
    for given in (devices, torus, shuffled):
        mesh = sharding.create_mesh(given)
        order = list(mesh.devices.flat)
        assert mesh.axis_names == (sharding.DATA_AXIS,) and sorted(d.id for d in order) == sorted(
            d.id for d in devices
        )
        rows = global_batch // len(processes)
        assert row_blocks(order, global_batch) == {
            p: [(k * rows, (k + 1) * rows)] for k, p in enumerate(processes)
        }
        for p in processes:  # a host's devices keep the interconnect order among themselves
            assert [d for d in order if d.process_index == p] == [d for d in torus if d.process_index == p]
        meshes.append([d.id for d in order])
    assert meshes[0] == meshes[1] == meshes[2]  # whatever order the devices come in


@dataclasses.dataclass(frozen=True, eq=False)
class FakeGpu:
    id: int
    process_index: int
    platform: str = "gpu"
    device_kind: str = "NVIDIA H100 80GB HBM3"


def test_gpu_hosts_whose_device_ids_interleave_still_feed_contiguous_blocks():
    devices = [FakeGpu(local * 2 + p, p) for p in range(2) for local in range(8)]
    assert row_blocks(sorted(devices, key=lambda d: d.id), 32) == {  # JAX's GPU order: by id
        0: [(2 * k, 2 * k + 2) for k in range(0, 16, 2)],
        1: [(2 * k, 2 * k + 2) for k in range(1, 16, 2)],
    }
    order = list(sharding.create_mesh(devices).devices.flat)
    assert row_blocks(order, 32) == {0: [(0, 16)], 1: [(16, 32)]}
    assert [d.id for d in order] == [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15]


def test_batch_not_divisible_by_devices_names_the_numbers_and_a_batch_that_works():
    with pytest.raises(
        UserError, match=r"config\.batch_size=12 must be a positive multiple of the number of devices \(8"
    ) as info:
        sharding.check_batch_size(12, sharding.create_mesh())
    assert "e.g. config.batch_size=16" in str(info.value) and "--config." not in str(info.value)
    with pytest.raises(UserError, match=r"config\.batch_size=3 .* devices \(8 across 1 process"):
        sharding.check_batch_size(3, sharding.create_mesh())
    with pytest.raises(UserError, match=r"config\.batch_size=0 must be a positive multiple"):
        sharding.check_batch_size(0, sharding.create_mesh())
    assert sharding.check_batch_size(16, sharding.create_mesh()) == 16  # one process feeds it all
    assert sharding.check_batch_size(16, sharding.create_mesh(), process_count=2) == 8


def test_make_global_batch_and_prefetch_to_device():
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    n = len(jax.devices())
    batches = [
        {
            "low_res": np.full((n, 2, 2, 3), k, np.uint8),
            "high_res": np.full((n, 4, 4, 3), k, np.uint8),
            "scale": 2,
        }
        for k in range(4)
    ]
    out = list(sharding.prefetch_to_device(iter(batches), 2, mesh))
    assert [int(b["low_res"][0, 0, 0, 0]) for b in out] == [0, 1, 2, 3]
    g = out[0]
    assert g["scale"] == 2 and g["high_res"].shape == (n, 4, 4, 3)
    assert g["low_res"].sharding.spec == jax.sharding.PartitionSpec("data")
    assert len(g["low_res"].addressable_shards) == n and g["low_res"].addressable_shards[0].data.shape == (
        1,
        2,
        2,
        3,
    )
    direct = sharding.make_global_batch(batches[3], mesh)
    np.testing.assert_array_equal(np.asarray(direct["high_res"]), batches[3]["high_res"])
    # A global batch of 3 on 8 devices is refused by the one check, before any batch is made.
    with pytest.raises(
        UserError, match=r"batch_size=3 must be a positive multiple of the number of devices \(8"
    ):
        sharding.check_batch_size(3, mesh)


# --- several processes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "3", "SLURM_STEP_NODELIST": "n[1-2]"}, "SLURM"),
        ({"SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "n1"}, None),  # one task
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "0"}, None),  # sbatch's script, not an srun step
        ({"OMPI_COMM_WORLD_SIZE": "4"}, "Open MPI"),
        ({"TPU_WORKER_HOSTNAMES": "t-0,t-1"}, "Cloud TPU"),
        ({"TPU_WORKER_HOSTNAMES": "t-0"}, None),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, "JAX_COORDINATOR_ADDRESS"),
        ({"EDSR_JAX_DISTRIBUTED": "1"}, "EDSR_JAX_DISTRIBUTED"),
        ({"EDSR_JAX_DISTRIBUTED": "0", "OMPI_COMM_WORLD_SIZE": "4"}, None),
    ],
)
def test_launcher_detection_from_the_environment(environ, expected):
    assert sharding.detect_launcher(environ) == expected


def test_maybe_initialize_distributed_checks_its_arguments_and_explains_failures(monkeypatch):
    seen = {}
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **k: seen.update(k))
    monkeypatch.setenv("EDSR_JAX_DISTRIBUTED", "0")
    assert not sharding.maybe_initialize_distributed()  # nothing asked for it: a one-process run
    assert not seen
    assert sharding.maybe_initialize_distributed(coordinator_address="h:1", num_processes=2, process_id=1)
    assert seen == {
        "coordinator_address": "h:1",
        "num_processes": 2,
        "process_id": 1,
        "local_device_ids": None,
    }
    with pytest.raises(UserError, match=r"process_id must be in \[0, 4\) for num_processes=4, got 4"):
        sharding.maybe_initialize_distributed(num_processes=4, process_id=4)
    monkeypatch.setattr(
        jax.distributed, "initialize", lambda **k: (_ for _ in ()).throw(ValueError("no address"))
    )
    monkeypatch.setenv("EDSR_JAX_DISTRIBUTED", "1")
    with pytest.raises(UserError, match=r"cannot start the multi-process runtime \(no address\)"):
        sharding.maybe_initialize_distributed()
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
    assert not sharding.maybe_initialize_distributed(True)  # already running: nothing to do
