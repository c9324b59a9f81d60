"""Where a CPU training step's time goes: EDSR baseline conv layers, one by one, JAX vs PyTorch.

For each conv shape of the EDSR baseline x2 (head 3->64, body 64->64, upsampler 64->256, tail
64->3 at the HR size) and each batch, times the forward pass, the input gradient and the
parameter (kernel + bias) gradients in three engines, alternating run by run in one process:

* ``ops``: ``edsr_jax.models.conv.conv2d`` (what the models use: CPU-specific parameter gradients),
* ``plain``: ``lax.conv_general_dilated + bias`` differentiated by JAX itself (as ``nn.Conv``),
* ``torch``: ``torch.nn.functional.conv2d`` and ``torch.nn.grad`` (if PyTorch is installed).

``--train-step`` also times the whole ``edsr_jax.train`` step of the baseline with ``models.Conv``
(``ops``) against the same model built from ``flax.linen.Conv`` (``plain``), to measure what the
custom gradients are worth end to end. ``--strip-sweep`` times one 64->64 kernel gradient on
48x48 maps, standard vs computed in s horizontal strips, for batches 1-16 (how
``conv.kernel_grad_strips`` was chosen).

    python experiments/perf/bench_conv_layers.py --batches 4,16 --repeats 7
    python experiments/perf/bench_conv_layers.py --batches 16 --train-step --repeats 9
    python experiments/perf/bench_conv_layers.py --strip-sweep --no-layers
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import numpy as np

from edsr_jax import compiler_options, models
from edsr_jax.models import conv as ops

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_models  # noqa: E402  (timing helpers and the train-step workload)

# (name, LR-relative size factor, Cin, Cout) of the EDSR baseline x2 layers.
LAYERS = (("head", 1, 3, 64), ("body", 1, 64, 64), ("upsample", 1, 64, 256), ("tail", 2, 64, 3))


def _plain(x, w, b):
    pad = w.shape[0] // 2
    dims = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=dims) + b


def jax_fns(conv, x, w, b, g):
    """Jitted forward, input-gradient and parameter-gradient functions of ``conv``."""
    options = compiler_options.for_program(compiler_options.TRAIN, jax.default_backend())
    fwd = jax.jit(conv, compiler_options=options)
    dx = jax.jit(lambda x, w, b, g: jax.vjp(lambda a: conv(a, w, b), x)[1](g)[0], compiler_options=options)
    dp = jax.jit(lambda x, w, b, g: jax.vjp(lambda k, c: conv(x, k, c), w, b)[1](g), compiler_options=options)
    return {
        "fwd": lambda: fwd(x, w, b).block_until_ready(),
        "dx": lambda: dx(x, w, b, g).block_until_ready(),
        "dparams": lambda: jax.block_until_ready(dp(x, w, b, g)),
    }


def torch_fns(x, w, g):
    import torch

    tx = torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()
    tw = torch.from_numpy(np.asarray(w)).permute(3, 2, 0, 1).contiguous()
    tg = torch.from_numpy(np.asarray(g)).permute(0, 3, 1, 2).contiguous()
    tb = torch.zeros(tw.shape[0])
    pad = tw.shape[-1] // 2

    def dparams():
        torch.nn.grad.conv2d_weight(tx, tw.shape, tg, padding=pad)
        return tg.sum((0, 2, 3))

    return {
        "fwd": lambda: torch.nn.functional.conv2d(tx, tw, tb, padding=pad),
        "dx": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tg, padding=pad),
        "dparams": dparams,
    }


def bench_layers(batches, patch, repeats, with_torch):
    print(
        f"{'layer':9s} {'batch':>5s} {'part':8s} {'ops_ms':>8s} {'plain_ms':>8s} {'torch_ms':>8s} "
        f"{'ops/plain':>9s} {'ops/torch':>9s}"
    )
    rng = np.random.default_rng(0)
    for batch in batches:
        for name, factor, cin, cout in LAYERS:
            hw = patch * factor
            x = jnp.asarray(rng.uniform(-1, 1, (batch, hw, hw, cin)), jnp.float32)
            w = jnp.asarray(rng.uniform(-0.1, 0.1, (3, 3, cin, cout)), jnp.float32)
            b = jnp.zeros((cout,), jnp.float32)
            g = jnp.asarray(rng.uniform(-1, 1, (batch, hw, hw, cout)), jnp.float32)
            engines = {"ops": jax_fns(ops.conv2d, x, w, b, g), "plain": jax_fns(_plain, x, w, b, g)}
            if with_torch:
                engines["torch"] = torch_fns(x, w, g)
            for part in ("fwd", "dx", "dparams"):
                times = bench_models.time_alternating({e: fns[part] for e, fns in engines.items()}, repeats)
                med = {e: 1e3 * statistics.median(t) for e, t in times.items()}
                torch_ms = med.get("torch", float("nan"))
                print(
                    f"{name:9s} {batch:5d} {part:8s} {med['ops']:8.2f} {med['plain']:8.2f} {torch_ms:8.2f} "
                    f"{med['ops'] / med['plain']:9.2f} {med['ops'] / torch_ms:9.2f}",
                    flush=True,
                )


def bench_strip_sweep(patch, repeats):
    rng = np.random.default_rng(0)
    options = compiler_options.for_program(compiler_options.TRAIN, jax.default_backend())
    standard = jax.jit(ops._kernel_grad_standard, compiler_options=options)
    strips = jax.jit(ops._kernel_grad_in_strips, static_argnums=3, compiler_options=options)
    for batch in (1, 2, 4, 8, 16):
        x, g = (jnp.asarray(rng.uniform(-1, 1, (batch, patch, patch, 64)), jnp.float32) for _ in range(2))
        w = jnp.asarray(rng.uniform(-0.1, 0.1, (3, 3, 64, 64)), jnp.float32)
        fns = {"standard": lambda x=x, w=w, g=g: standard(x, w, g).block_until_ready()}
        for s in (2, 4, 8, 16):
            fns[f"s={s}"] = lambda x=x, w=w, g=g, s=s: strips(x, w, g, s).block_until_ready()
        times = {k: statistics.median(v) for k, v in bench_models.time_alternating(fns, repeats).items()}
        base = times.pop("standard")
        chosen = ops.kernel_grad_strips(batch)
        cells = "  ".join(f"{k} {v / base:.2f}x" for k, v in times.items())
        head = f"kernel grad 64->64 batch {batch:2d}: standard {1e3 * base:7.2f} ms"
        print(f"{head}  {cells}  (used: s={chosen})", flush=True)


def bench_train_step(batches, patch, repeats):
    import flax.linen as nn

    def flax_conv(features, kernel_size, in_features, dtype=None, param_dtype=jnp.float32, name=None):
        return nn.Conv(
            features,
            (kernel_size, kernel_size),
            padding="SAME",
            dtype=dtype,
            param_dtype=param_dtype,
            kernel_init=models.torch_conv_kernel_init,
            bias_init=models._torch_bias_init(in_features * kernel_size * kernel_size),
            name=name,
        )

    model, variables, _ = bench_models.build_models("edsr_baseline", 2, False)
    for batch in batches:
        ours, *_ = bench_models.train_workload(model, variables, None, batch, patch, jnp.float32)
        original = models.torch_conv
        models.torch_conv = flax_conv  # the step is traced inside train_workload
        try:
            plain, *_ = bench_models.train_workload(model, variables, None, batch, patch, jnp.float32)
        finally:
            models.torch_conv = original
        times = bench_models.time_alternating({"ops": ours["jax"], "plain": plain["jax"]}, repeats)
        med = {e: statistics.median(t) for e, t in times.items()}
        print(
            f"train step batch {batch}: models.Conv {med['ops']:.3f} s, nn.Conv {med['plain']:.3f} s "
            f"(medians of {repeats}); ratio {med['ops'] / med['plain']:.3f}",
            flush=True,
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="4,16", help="comma-separated batch sizes")
    p.add_argument("--patch", type=int, default=48, help="LR patch side")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    p.add_argument("--train-step", action="store_true", help="also A/B the whole train step")
    p.add_argument("--strip-sweep", action="store_true", help="also time kernel gradients in strips")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    with_torch = not args.no_torch
    if with_torch:
        try:
            import torch

            torch.set_num_threads(bench_models.cores())
        except ImportError:
            with_torch = False
    print(f"# {bench_models.cores()} cores, jax {jax.__version__}, load {os.getloadavg()}")
    if not args.no_layers:
        bench_layers(batches, args.patch, args.repeats, with_torch)
    if args.strip_sweep:
        bench_strip_sweep(args.patch, args.repeats)
    if args.train_step:
        bench_train_step(batches, args.patch, args.repeats)
    print(f"# load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
