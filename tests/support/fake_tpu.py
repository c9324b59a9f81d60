"""Stand-ins for the devices of multi-host TPU slices: the attributes JAX's mesh code reads.

A slice is a grid of chips (``coords``, one device per chip: megacore on v4/v5p), tiled by hosts
of ``host`` chips each; each host is one process. Processes are numbered host by host, x fastest,
and slices follow each other (``slice_index``, process numbers continuing). Device ids are
process-tiled, as ``jax.devices()`` lists them.
"""

from __future__ import annotations

import dataclasses
import itertools


@dataclasses.dataclass(frozen=True, eq=False)
class FakeTpu:
    id: int
    process_index: int
    coords: tuple[int, int, int]
    slice_index: int = 0
    core_on_chip: int = 0
    platform: str = "tpu"
    device_kind: str = "TPU v4"


# name: (device_kind, chips per axis, chips per host per axis): the multi-host slices of issue 24.
TOPOLOGIES = {
    "v4-32": ("TPU v4", (2, 2, 4), (2, 2, 1)),
    "v5litepod-16": ("TPU v5 lite", (4, 4, 1), (2, 2, 1)),
    "v5litepod-64": ("TPU v5 lite", (8, 8, 1), (2, 2, 1)),
    "v6e-16": ("TPU v6 lite", (4, 4, 1), (2, 2, 1)),
    "v5p-32": ("TPU v5p", (2, 2, 4), (2, 2, 1)),
}


def tpu_slices(name: str, num_slices: int = 1) -> list[FakeTpu]:
    """The devices of ``num_slices`` slices of topology ``name``, in ``jax.devices()`` order."""
    kind, chips, host = TOPOLOGIES[name]
    hosts = [c // h for c, h in zip(chips, host, strict=True)]
    per_host = host[0] * host[1] * host[2]
    devices = []
    for s in range(num_slices):
        first = s * hosts[0] * hosts[1] * hosts[2]
        for z, y, x in itertools.product(*(range(n) for n in reversed(chips))):
            hx, hy, hz = x // host[0], y // host[1], z // host[2]
            process = first + hx + hosts[0] * (hy + hosts[1] * hz)
            local = (x % host[0]) + host[0] * ((y % host[1]) + host[1] * (z % host[2]))
            devices.append(FakeTpu(process * per_host + local, process, (x, y, z), s, device_kind=kind))
    return sorted(devices, key=lambda d: d.id)
