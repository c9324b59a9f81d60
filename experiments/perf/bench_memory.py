"""Training memory of SRResNet vs the EDSR baseline: the "about 40 %" that removing batch norm saves.

The EDSR paper (Lim et al. 2017, Sec. 3.1) says that its baseline, SRResNet's residual blocks
without batch norm, saves about 40 % of the memory during training. This script compiles, and
does NOT run, one training step of each (forward, loss, gradients, Adam update; the state donated)
on the default backend:

* SRResNet (``models.srresnet``, L2 loss, batch statistics updated: ``mutable=["batch_stats"]``);
* the EDSR baseline (``models.edsr_baseline``, B16 F64, L1 loss);

at the same scale, batch and LR patch (default x2, 16 patches of 48x48, uint8 like the trainer),
and prints XLA's ``memory_analysis()`` of each: temp (every buffer live inside the step: the
activations kept for the backward pass, gradients, scratch), arguments (state and batch), outputs
(the new state, aliased to the donated one), temp + arguments, then the ratio EDSR / SRResNet and
the memory saved, 1 - ratio, beside the paper's 40 %.

Second, what JAX's autodiff keeps before XLA optimises: the residuals of ``jax.vjp`` of the
forward pass, traced only, for the whole network and per residual block (a network with 2 blocks
minus one with 1).

Third (unless ``--no-torch``): what PyTorch keeps for the backward pass of the same two
networks (``tests/support``'s independent PyTorch EDSR and SRResNet), measured with
``torch.autograd.graph.saved_tensors_hooks`` on one grad-enabled forward pass at the same sizes
(distinct activation storages, parameters excluded), beside the count per residual block: EDSR
keeps 2 feature maps (the block input for conv1, the ReLU output for conv2), SRResNet 4 (also the
inputs of its two batch norms, which need them for their gradients).

Examples::

    python experiments/perf/bench_memory.py                       # x2, batch 16, 48x48
    python experiments/perf/bench_memory.py --scale 4 --json mem.json
    python experiments/perf/bench_memory.py --quick               # batch 2, 8x8 (the test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import optax

from edsr_jax import compiler_options, models

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The paper's figure (Sec. 3.1): "saves approximately 40% of memory usage during training".
PAPER_SAVING = 0.40
# Adam as the paper trains (beta1 0.9, beta2 0.999, eps 1e-8, lr 1e-4).
ADAM = {"learning_rate": 1e-4, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
ARCHS = ("edsr_baseline", "srresnet")
# Feature maps (N x H x W x F at the LR size) PyTorch keeps per residual block, and which.
SAVED_PER_BLOCK = {
    "edsr_baseline": (2, "block input (conv1), ReLU output (conv2)"),
    "srresnet": (4, "block input (conv1), conv1 output (bn1), ReLU output (conv2), conv2 output (bn2)"),
}


# --- the two training steps -------------------------------------------------------------------


def l1_loss(sr: jax.Array, hr: jax.Array) -> jax.Array:
    """EDSR's loss."""
    return jnp.mean(jnp.abs(sr - hr))


def l2_loss(sr: jax.Array, hr: jax.Array) -> jax.Array:
    """SRResNet's loss (Ledig et al.: MSE)."""
    return jnp.mean(jnp.square(sr - hr))


def build(arch: str, scale: int):
    """``(model, loss)``: SRResNet with L2, or the EDSR baseline with L1."""
    if arch == "srresnet":
        return models.srresnet(scale), l2_loss
    return models.edsr_baseline(scale), l1_loss


def make_step(model, loss_fn, tx: optax.GradientTransformation):
    """``step(state, lr, hr) -> (state, loss)``; ``state`` holds params, opt_state (and batch_stats)."""
    with_bn = isinstance(model, models.SRResNet)

    def step(state, lr, hr):
        lr, hr = lr.astype(jnp.float32), hr.astype(jnp.float32)

        def objective(params):
            if with_bn:
                variables = {"params": params, "batch_stats": state["batch_stats"]}
                sr, updates = model.apply(variables, lr, train=True, mutable=["batch_stats"])
                return loss_fn(sr, hr), updates["batch_stats"]
            return loss_fn(model.apply({"params": params}, lr), hr), None

        (loss, stats), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}
        if with_bn:
            new["batch_stats"] = stats
        return new, loss

    return step


def abstract_inputs(model, tx, scale: int, batch: int, patch: int):
    """Shapes of ``(state, lr, hr)``, without computing a value."""

    def state():
        variables = models.init(model, jax.random.key(0))
        return {**variables, "opt_state": tx.init(variables["params"])}

    lr = jax.ShapeDtypeStruct((batch, patch, patch, 3), jnp.uint8)
    hr = jax.ShapeDtypeStruct((batch, patch * scale, patch * scale, 3), jnp.uint8)
    return jax.eval_shape(state), lr, hr


def compiled_memory(arch: str, scale: int, batch: int, patch: int) -> dict:
    """XLA's memory analysis of ``arch``'s compiled (not run) training step, in bytes."""
    model, loss_fn = build(arch, scale)
    tx = optax.adam(**ADAM)
    t0 = time.perf_counter()
    compiled = (
        jax.jit(
            make_step(model, loss_fn, tx),
            donate_argnums=0,
            compiler_options=compiler_options.for_program(compiler_options.TRAIN, jax.default_backend()),
        )
        .lower(*abstract_inputs(model, tx, scale, batch, patch))
        .compile()
    )
    stats = compiled.memory_analysis()
    out = {
        "temp": int(stats.temp_size_in_bytes),
        "argument": int(stats.argument_size_in_bytes),
        "output": int(stats.output_size_in_bytes),
        "alias": int(stats.alias_size_in_bytes),
        "compile_s": time.perf_counter() - t0,
    }
    out["temp_plus_argument"] = out["temp"] + out["argument"]
    return out


# --- what JAX's autodiff keeps (before XLA fuses and schedules) ----------------------------------


def jax_residual_bytes(model, batch: int, patch: int) -> int:
    """Bytes of the residuals ``jax.vjp`` of the forward pass keeps for the backward pass (traced only).

    The leaves of the VJP closure, summed: an array saved by two operations counts twice.
    """
    abstract = jax.eval_shape(lambda: models.init(model, jax.random.key(0)))
    others = {k: v for k, v in abstract.items() if k != "params"}
    x = jax.ShapeDtypeStruct((batch, patch, patch, 3), jnp.float32)

    def forward(params, others, x):
        variables = {**others, "params": params}
        if "batch_stats" in others:
            return model.apply(variables, x, train=True, mutable=["batch_stats"])[0].mean()
        return model.apply(variables, x).mean()

    vjp_fn = jax.eval_shape(
        lambda p, o, x: jax.vjp(lambda q: forward(q, o, x), p)[1], abstract["params"], others, x
    )
    return int(sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(vjp_fn)))


def jax_residuals(arch: str, scale: int, batch: int, patch: int) -> dict:
    """The whole network's residual bytes, and one residual block's (B=2 minus B=1) in F-maps."""
    model, _ = build(arch, scale)
    fmap = batch * patch * patch * model.num_features * 4
    one, two = (jax_residual_bytes(model.clone(num_blocks=b), batch, patch) for b in (1, 2))
    return {"bytes": jax_residual_bytes(model, batch, patch), "per_block_maps": (two - one) / fmap}


# --- what PyTorch keeps for backward ----------------------------------------------------------


def torch_network(arch: str, scale: int):
    """The independent PyTorch network of ``tests/support`` (random weights, train mode)."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
    if arch == "srresnet":
        from support.torch_srresnet import TorchSRResNet

        return TorchSRResNet(scale, 16, 64).train()
    from support import torch_reference

    return torch_reference.build_model("edsr", scale, 16, 64).train()


def torch_saved_bytes(arch: str, scale: int, batch: int, patch: int) -> dict:
    """Activation tensors PyTorch saves for backward in one forward pass (distinct storages)."""
    import torch

    net = torch_network(arch, scale)
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    saved = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    x = torch.rand(batch, 3, patch, patch) * 255
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x)
    fmap = batch * patch * patch * 64 * 4  # one F=64 float32 map at the LR size
    return {
        "tensors": len(saved),
        "maps": sum(1 for n in saved.values() if n >= fmap),  # (the rest: 3-channel images, BN stats)
        "bytes": int(sum(saved.values())),
    }


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=int, default=2, choices=models.SUPPORTED_SCALES)
    p.add_argument("--batch", type=int, default=16, help="LR patches per step")
    p.add_argument("--patch", type=int, default=48, help="LR patch side")
    p.add_argument("--quick", action="store_true", help="tiny sizes for the test: batch 2, 8x8 patches")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch's saved-tensor measurement")
    p.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.patch = 2, 8
    if args.batch < 1 or args.patch < 1:
        p.error(f"--batch and --patch must be positive, got {args.batch} and {args.patch}")
    return args


def _mb(n: float) -> str:
    return f"{n / 2**20:10.1f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    print(
        f"# {platform.processor() or platform.machine()}, jax {jax.__version__} ({jax.default_backend()}, "
        f"{jax.devices()[0].device_kind}); training step x{args.scale}, batch {args.batch} of "
        f"{args.patch}x{args.patch} LR, Adam, state donated; compiled, not run"
    )
    xla = {arch: compiled_memory(arch, args.scale, args.batch, args.patch) for arch in ARCHS}
    print(
        f"{'model':14s} {'temp MB':>10s} {'args MB':>10s} {'out MB':>10s} {'temp+args':>10s} "
        f"{'compile s':>9s}"
    )
    for arch, m in xla.items():
        print(
            f"{arch:14s} {_mb(m['temp'])} {_mb(m['argument'])} {_mb(m['output'])} "
            f"{_mb(m['temp_plus_argument'])} {m['compile_s']:9.1f}"
        )
    ratio = xla["edsr_baseline"]["temp_plus_argument"] / xla["srresnet"]["temp_plus_argument"]
    ratio_temp = xla["edsr_baseline"]["temp"] / xla["srresnet"]["temp"]
    result = {
        "args": vars(args),
        "backend": jax.default_backend(),
        "xla": xla,
        "ratio_edsr_srresnet": ratio,
        "saved": 1 - ratio,
        "ratio_temp": ratio_temp,
        "saved_temp": 1 - ratio_temp,
        "paper_saved": PAPER_SAVING,
    }
    print(
        f"XLA: EDSR/SRResNet temp+args {ratio:.3f} -> memory saved {100 * (1 - ratio):.1f} % "
        f"(temp alone {100 * (1 - ratio_temp):.1f} %); paper: about {100 * PAPER_SAVING:.0f} %"
    )
    fmap = args.batch * args.patch * args.patch * 64 * 4  # one F=64 float32 map at the LR size
    kept = {arch: jax_residuals(arch, args.scale, args.batch, args.patch) for arch in ARCHS}
    for arch, r in kept.items():
        print(
            f"JAX autodiff {arch:14s} keeps {_mb(r['bytes']).strip()} MB of residuals; per block "
            f"{r['per_block_maps']:.2f} F-maps (float32 maps; ReLU masks count 1/4)"
        )
    jax_ratio = kept["edsr_baseline"]["bytes"] / kept["srresnet"]["bytes"]
    print(f"JAX autodiff: EDSR/SRResNet residuals {jax_ratio:.3f} -> saved {100 * (1 - jax_ratio):.1f} %")
    result.update(jax_residuals=kept, jax_residual_ratio=jax_ratio)
    if not args.no_torch:
        torch_kept = {arch: torch_saved_bytes(arch, args.scale, args.batch, args.patch) for arch in ARCHS}
        for arch, kept in torch_kept.items():
            n, which = SAVED_PER_BLOCK[arch]
            print(
                f"PyTorch {arch:14s} keeps {_mb(kept['bytes']).strip()} MB for backward in {kept['tensors']} "
                f"tensors ({kept['maps']} of F-map size or more); per block {n} F-maps "
                f"({_mb(n * fmap).strip()} MB): {which}"
            )
        torch_ratio = torch_kept["edsr_baseline"]["bytes"] / torch_kept["srresnet"]["bytes"]
        print(
            f"PyTorch: EDSR/SRResNet saved activations {torch_ratio:.3f} -> memory saved "
            f"{100 * (1 - torch_ratio):.1f} % (activations only; weights, gradients, Adam and the "
            "allocator's cache come on top)"
        )
        result.update(torch=torch_kept, torch_ratio=torch_ratio, torch_saved=1 - torch_ratio)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
