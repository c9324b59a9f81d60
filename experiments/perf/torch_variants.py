"""PyTorch runners for bench_models.py: eager (NCHW), channels-last, and torch.compile of the
channels-last model, for inference, the x8 self-ensemble and an Adam/L1 training step.

Every builder returns ``{engine: Variant}``; a variant that cannot be built (e.g. torch.compile
without a working C++ compiler) carries its error instead of a function, and the benchmark
reports it in its row rather than crashing. torch.compile's first calls (the compile) are run and
timed here, so the timed rounds measure only the compiled program.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# --torch-variants name -> engine name in the results (``torch`` stays the eager one).
ENGINES = {"eager": "torch", "channels_last": "torch_cl", "compile": "torch_compile"}
# Calls made while compiling (the first compiles; the second catches a recompile, e.g. for the
# gradients' layout); their seconds are reported as the compile time.
COMPILE_CALLS = 2


class Variant(NamedTuple):
    """One PyTorch runner: ``run`` (None when it could not be built), why not, compile seconds."""

    run: Callable[[], object] | None
    error: str | None = None
    compile_s: float | None = None


def _layout(name: str):
    """The torch memory format of a variant."""
    import torch

    return torch.contiguous_format if name == "eager" else torch.channels_last


def _compiled(name: str, make: Callable[[], Callable[[], object]]) -> Variant:
    """Builds ``make()``; for "compile" runs it COMPILE_CALLS times, timed; errors become rows."""
    try:
        run = make()
        if name != "compile":
            return Variant(run)
        t0 = time.perf_counter()
        for _ in range(COMPILE_CALLS):
            run()
        return Variant(run, compile_s=time.perf_counter() - t0)
    except Exception as err:  # torch.compile needs a C++ toolchain and may fail on odd setups
        return Variant(None, error=f"{type(err).__name__}: {' '.join(str(err).split())[:300]}")


def dihedral(x, k: int, inverse: bool = False):
    """inference.dihedral for NCHW torch tensors (flip W = dim 3, flip H = dim 2)."""
    steps = [(1, lambda t: t.flip(3)), (2, lambda t: t.flip(2)), (4, lambda t: t.transpose(2, 3))]
    for bit, op in reversed(steps) if inverse else steps:
        if k & bit:
            x = op(x)
    return x


def inference_variants(net, x_nhwc: np.ndarray, ensemble: bool, names: list[str], transforms: int = 8):
    """Forward (or the x8 self-ensemble) of one NHWC float image under ``torch.inference_mode``."""
    import torch

    out = {}
    for name in names:

        def make(name=name):
            layout = _layout(name)
            model = copy.deepcopy(net).eval().to(memory_format=layout)
            x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous(memory_format=layout)
            net_fn = torch.compile(model) if name == "compile" else model

            def transformed(t, k):
                # Channels-last variants see one layout (a flip or transpose changes the strides;
                # for torch.compile, each new layout would be another compile).
                t = dihedral(t, k)
                return t if name == "eager" else t.contiguous(memory_format=layout)

            def run():
                with torch.inference_mode():
                    if not ensemble:
                        return net_fn(x)
                    total = 0
                    for k in range(transforms):
                        total = total + dihedral(net_fn(transformed(x, k)), k, inverse=True)
                    return total / transforms

            return run

        out[ENGINES[name]] = _compiled(name, make)
    return out


def train_variants(
    net, low_res_nhwc: np.ndarray, hr_nhwc: np.ndarray, names: list[str], learning_rate: float = 1e-4
):
    """An Adam (0.9, 0.999, 1e-8) step on the L1 loss of a uint8 NHWC batch, per variant."""
    import torch

    out = {}
    for name in names:

        def make(name=name):
            layout = _layout(name)
            model = copy.deepcopy(net).train().to(memory_format=layout)
            opt = torch.optim.Adam(model.parameters(), lr=learning_rate, betas=(0.9, 0.999), eps=1e-8)
            low_res_t = torch.from_numpy(low_res_nhwc).permute(0, 3, 1, 2).contiguous(memory_format=layout)
            hr_t = torch.from_numpy(hr_nhwc).permute(0, 3, 1, 2).contiguous(memory_format=layout)
            forward = torch.compile(model) if name == "compile" else model

            def run():
                opt.zero_grad(set_to_none=True)
                loss = torch.nn.functional.l1_loss(forward(low_res_t.float()), hr_t.float())
                loss.backward()
                opt.step()
                return loss.item()

            return run

        out[ENGINES[name]] = _compiled(name, make)
    return out
