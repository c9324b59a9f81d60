"""Convolution FLOPs of EDSR and MDSR, counted from the architecture (no framework imported).

One stride-1 SAME convolution forward on an h x w map costs ``2 * h * w * k * k * Cin * Cout``
FLOPs (a multiply and an add per MAC). A training step counts 3x the forward: the forward, the
input gradients and the weight gradients. Mean shifts, additions, ReLUs and pixel shuffles are
left out: they move bytes, not tensor-core FLOPs. Used by ``bench_models.py`` and
``device_check.py``; ``tests/test_experiments.py`` checks the count against the convolutions
that JAX traces for each model.
"""

from __future__ import annotations

from collections.abc import Sequence

# Kernel side of every convolution but MDSR's pre-processing blocks, and of those.
KERNEL = 3
PRE_PROCESS_KERNEL = 5
# Convolutions in MDSR's per-scale pre-processing (2 residual blocks of 2 convolutions).
PRE_PROCESS_CONVS = 4
# A training step's FLOPs as a multiple of its forward pass (forward + two gradients).
TRAIN_FACTOR = 3


def conv_flops(h: int, w: int, cin: int, cout: int, k: int = KERNEL) -> float:
    """FLOPs of one stride-1 SAME conv forward on an h x w map."""
    return 2.0 * h * w * k * k * cin * cout


def upsample_factors(scale: int) -> tuple[int, ...]:
    """The pixel-shuffle stages of the official upsampler: x2 (2,), x3 (3,), x4 (2, 2)."""
    return (2, 2) if scale == 4 else (scale,)


def edsr_forward_flops(h: int, w: int, scale: int, num_blocks: int, num_features: int) -> float:
    """Conv FLOPs of one EDSR forward pass on one h x w LR image."""
    f = num_features
    total = conv_flops(h, w, 3, f)  # head
    total += (2 * num_blocks + 1) * conv_flops(h, w, f, f)  # blocks + body_end
    hh, ww = h, w
    for r in upsample_factors(scale):
        total += conv_flops(hh, ww, f, r * r * f)
        hh, ww = hh * r, ww * r
    return total + conv_flops(hh, ww, f, 3)  # tail at the output resolution


def sr_forward_flops(arch: str, h: int, w: int, scale: int, num_blocks: int, num_features: int) -> float:
    """Conv FLOPs of one forward pass of ``arch`` ("edsr" or "mdsr") at ``scale``: MDSR is EDSR
    plus its 5x5 pre-processing convolutions of that scale."""
    flops = edsr_forward_flops(h, w, scale, num_blocks, num_features)
    if arch == "mdsr":
        flops += PRE_PROCESS_CONVS * conv_flops(h, w, num_features, num_features, PRE_PROCESS_KERNEL)
    return flops


def train_step_flops(
    arch: str, batch: int, patch: int, scales: Sequence[int], num_blocks: int, num_features: int
) -> float:
    """Conv FLOPs of one training step on ``batch`` LR patches of ``patch`` x ``patch``, averaged
    over ``scales`` (MDSR's steps cycle through them)."""
    per_scale = [sr_forward_flops(arch, patch, patch, s, num_blocks, num_features) for s in scales]
    return TRAIN_FACTOR * batch * sum(per_scale) / len(per_scale)
