"""Speed of EDSR inference and training in edsr-jax, optionally side by side with PyTorch.

Workloads (per model): ``infer`` (one LR image, default 256x256), ``ensemble`` (the same image
with the x8 self-ensemble), ``tiled`` (a 2K DIV2K-sized LR image, 1020x678 at x2, through
``edsr_jax.inference.make_upscaler(tile=...)``), ``train16`` and ``train4`` (the real
``edsr_jax.train`` step, batch 16 or 4 of 48x48 LR uint8 patches, Adam on L1).

For each it prints seconds (median and min over alternating repeats), LR pixels/s, achieved
GFLOP/s from an analytic count of the convolution FLOPs (``2*H*W*k*k*Cin*Cout`` per conv forward;
a training step counts 3x the forward: forward + input and weight gradients) and the fraction of
the fp32 FMA peak (``--peak-gflops``, or measured by ``experiments/perf/fma_peak.py``). With
``--compare-torch`` the same architecture runs in PyTorch (``torch.set_num_threads`` = the cores
this process may use) with the same weights, in the same process, alternating with JAX run by run
(11 rounds by default), in up to three variants (``--torch-variants``; ``torch_variants.py``):
``torch`` (eager, NCHW), ``torch_cl`` (channels-last model and inputs) and ``torch_compile``
(``torch.compile`` of the channels-last model, default mode; its compile time is printed apart and
not timed). ``tiled`` runs eager PyTorch only. For each variant the ratio JAX/variant is printed
(< 1: JAX faster): "paired" is the median over rounds of the ratio within a round (the figure to
quote on a machine whose speed drifts), then the ratio of the medians and of the minima; then JAX
against the fastest PyTorch variant (by median). A variant that fails to build (torch.compile
needs a C++ compiler) is reported in its row.

Examples::

    python experiments/perf/bench_models.py --compare-torch                     # baseline, all workloads
    python experiments/perf/bench_models.py --models edsr --quick --compare-torch
    python experiments/perf/bench_models.py --compare-torch --workloads infer,train16 --torch-variants compile
    python experiments/perf/bench_models.py --workloads train16 --repeats 5 --json out.json

The JAX programs compile with the library's options for their kind
(:func:`edsr_jax.compiler_options.for_program`); ``bench_cpu_routing.py`` compares the routings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import types
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from edsr_jax import compiler_options, inference, models, tiling

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # (conv_flops.py, beside this script)
from conv_flops import edsr_forward_flops  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Presets this script knows: (num_blocks, num_features, res_scale).
ARCHS = {"edsr_baseline": (16, 64, 1.0), "edsr": (32, 256, 0.1)}
WORKLOADS = ("infer", "ensemble", "tiled", "train16", "train4")
# PyTorch variants (--torch-variants; engines torch, torch_cl, torch_compile in torch_variants.py).
TORCH_VARIANTS = ("eager", "channels_last", "compile")


# --- timing -----------------------------------------------------------------------------------


def time_alternating(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Runs each fn once untimed, then ``repeats`` rounds of all fns in turn; returns the seconds."""
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for rep in range(repeats):
        order = list(fns) if rep % 2 == 0 else list(fns)[::-1]
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            out[name].append(time.perf_counter() - t0)
    return out


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- models -----------------------------------------------------------------------------------


def build_models(arch: str, scale: int, with_torch: bool, seed: int = 0):
    """(jax_model, variables, torch_model or None) with the same weights when torch is used."""
    blocks, feats, res_scale = ARCHS[arch]
    if not with_torch:
        model = models.EDSR(scale=scale, num_blocks=blocks, num_features=feats, res_scale=res_scale)
        return model, models.init(model, jax.random.PRNGKey(seed)), None
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
    from support import torch_reference  # the repository's independent PyTorch EDSR (official key names)

    from edsr_jax.interop import torch as convert

    net = torch_reference.randomize_(
        torch_reference.build_model("edsr", scale, blocks, feats, res_scale), seed
    )
    state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    model, variables = convert.convert_state_dict(state)
    variables = jax.tree.map(jnp.asarray, variables)
    return model, variables, net


# --- workloads: each returns {"jax": fn, "torch": fn or absent}, LR pixels, FLOPs -------------


def _torch_variants():
    """experiments/perf/torch_variants.py (beside this script)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_variants

    return torch_variants


def _add_variants(fns: dict, variants: dict) -> dict:
    """Puts the runnable PyTorch variants into ``fns``; returns their errors and compile times."""
    fns.update({name: v.run for name, v in variants.items() if v.run is not None})
    return {name: {"error": v.error, "compile_s": v.compile_s} for name, v in variants.items()}


def infer_workload(model, variables, net, size: int, ensemble: bool, dtype, variants=("eager",)):
    """One size x size LR image, plain or x8 self-ensemble, jitted as one program."""
    m = model.clone(dtype=dtype)
    rng = np.random.default_rng(0)
    x_np = rng.uniform(0, 255, (1, size, size, 3)).astype(np.float32)
    x = jax.device_put(x_np)

    def fwd(v, t):
        return m.apply(v, t)

    options = compiler_options.for_program(compiler_options.INFER, jax.default_backend())

    def ensembled(v, t):  # the x8 ensemble as one program (the package's Upscaler runs 8 passes)
        outs = [inference.undo_dihedral(fwd(v, inference.dihedral(t, k)), k) for k in range(8)]
        return sum(outs) / len(outs)

    f = jax.jit(ensembled if ensemble else fwd, compiler_options=options)
    fns = {"jax": lambda: f(variables, x).block_until_ready()}
    extra = {}
    if net is not None:
        built = _torch_variants().inference_variants(
            net, x_np, ensemble, list(variants), transforms=inference.NUM_TRANSFORMS
        )
        extra["torch_variants"] = _add_variants(fns, built)
    passes = inference.NUM_TRANSFORMS if ensemble else 1
    return (
        fns,
        size * size,
        passes * edsr_forward_flops(size, size, model.scale, model.num_blocks, model.num_features),
        extra,
    )


def tiled_workload(model, variables, net, hw: tuple[int, int], tile: int, dtype):
    """A large LR image through make_upscaler(tile=...); PyTorch runs the same tile grid."""
    h, w = hw
    scale = model.scale
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    up = inference.make_upscaler(model, variables, scale, tile=tile, dtype=dtype)
    tiles = len(tiling.tile_starts(h, max(h, tile), tile, tile - 2 * up.overlap, up.overlap)) * len(
        tiling.tile_starts(w, max(w, tile), tile, tile - 2 * up.overlap, up.overlap)
    )
    fns = {"jax": lambda: up(image)}
    if net is not None:
        import torch

        def torch_tile(patch):
            with torch.inference_mode():
                t = torch.from_numpy(np.ascontiguousarray(patch)).permute(0, 3, 1, 2)
                return net(t).permute(0, 2, 3, 1).numpy()

        x = image.astype(np.float32)[None]
        fns["torch"] = lambda: tiling.tiled(torch_tile, x, scale=scale, tile=tile, overlap=up.overlap)
    flops = tiles * edsr_forward_flops(tile, tile, scale, model.num_blocks, model.num_features)
    return fns, h * w, flops


def train_workload(model, variables, net, batch: int, patch: int, dtype, variants=("eager",)):
    """The real edsr_jax.train step (jit, donated state) and a PyTorch Adam/L1 step."""
    import optax

    from edsr_jax import optim, sharding, train_step

    m = model.clone(dtype=dtype)
    scale = model.scale
    cfg = types.SimpleNamespace(adam_b1=0.9, adam_b2=0.999, adam_eps=1e-8)
    tx = optim.create_optimizer(cfg, m)
    learning_rate_fn = optax.constant_schedule(1e-4)
    mesh = sharding.create_mesh(jax.devices()[:1])
    state, shardings = train_step.create_train_state(m, tx, mesh, jax.random.PRNGKey(0))
    # A copy: the step donates (deletes) its input state, and ``variables`` is used again later.
    params = jax.tree.map(jnp.copy, variables["params"])
    state = state.replace(params=jax.device_put(params, sharding.replicated(mesh)))
    rng = np.random.default_rng(0)
    low_res_np = rng.integers(0, 256, (batch, patch, patch, 3), dtype=np.uint8)
    hr_np = rng.integers(0, 256, (batch, patch * scale, patch * scale, 3), dtype=np.uint8)
    data = sharding.make_global_batch({"low_res": low_res_np, "high_res": hr_np}, mesh)
    step = train_step.compile_train_step(m, tx, learning_rate_fn, mesh, shardings, scale)
    t0 = time.perf_counter()
    lowered = step.lower(state, data)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    holder = {"state": state}

    def jax_run():
        holder["state"], metrics = compiled(holder["state"], data)
        return jax.block_until_ready(metrics["loss"])

    t3 = time.perf_counter()
    jax_run()
    compile_info = {"lower_s": t1 - t0, "compile_s": t2 - t1, "first_step_s": time.perf_counter() - t3}
    fns = {"jax": jax_run}
    if net is not None:
        built = _torch_variants().train_variants(net, low_res_np, hr_np, list(variants))
        compile_info["torch_variants"] = _add_variants(fns, built)
    flops = 3 * batch * edsr_forward_flops(patch, patch, scale, model.num_blocks, model.num_features)
    return fns, batch * patch * patch, flops, compile_info


# --- main -------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="edsr_baseline", help=f"comma-separated, from {sorted(ARCHS)}")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, from {WORKLOADS}")
    p.add_argument("--infer-size", type=int, default=256, help="LR side of the single image")
    p.add_argument("--tiled-size", default="1020x678", help="LR WxH of the tiled image")
    p.add_argument("--tile", type=int, default=512, help="LR tile side for the tiled workload")
    p.add_argument("--patch", type=int, default=48, help="LR patch side of the training batch")
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds after 1 warm-up (3; 11 with --compare-torch; 2 with --quick)",
    )
    p.add_argument(
        "--peak-gflops",
        type=float,
        default=None,
        help="the fp32 FMA peak (default: measured by experiments/perf/fma_peak.py; none if that fails)",
    )
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="JAX compute dtype")
    p.add_argument("--compare-torch", action="store_true", help="also run PyTorch, alternating")
    p.add_argument(
        "--torch-variants",
        default="eager,channels_last,compile",
        help="PyTorch variants with --compare-torch, from eager, channels_last, compile (%(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: 64x64 image, 128x96 tiled, tile 128, train batch 4 of 24x24, no train16",
    )
    p.add_argument("--json", default="", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.infer_size, args.tiled_size, args.tile, args.patch = 64, "128x96", 128, 24
        args.repeats = args.repeats or 2
        args.workloads = ",".join(w for w in args.workloads.split(",") if w != "train16")
    args.repeats = args.repeats or (11 if args.compare_torch else 3)
    for name in args.torch_variants.split(","):
        if name not in TORCH_VARIANTS:
            p.error(f"--torch-variants: unknown variant {name!r}; choose from {TORCH_VARIANTS}")
    for name in args.models.split(","):
        if name not in ARCHS:
            p.error(f"--models: unknown model {name!r}; choose from {sorted(ARCHS)}")
    for name in args.workloads.split(","):
        if name not in WORKLOADS:
            p.error(f"--workloads: unknown workload {name!r}; choose from {WORKLOADS}")
    return args


def _fmt_row(arch, work, engine, times, pixels, flops, peak):
    med, best = statistics.median(times), min(times)
    gf = flops / med / 1e9
    share = f"{100 * gf / peak:6.1f}%" if peak else "    n/a"
    return f"{arch:14s} {work:9s} {engine:13s} {med:8.3f} {best:8.3f} {pixels / med:11.0f} {gf:8.1f} {share}"


def torch_ratios(times: dict[str, list[float]]) -> dict:
    """JAX / each PyTorch engine in ``times``, and JAX / the fastest of them (by median).

    Each round runs every engine back to back, so a round's ratio is immune to the slow drift of
    a shared machine's speed: "paired", the median of the per-round ratios, is the headline figure.
    """
    jax_t = times["jax"]
    out = {}
    for name, ts in times.items():
        if name.startswith("torch"):
            out[name] = {
                "paired": statistics.median(j / t for j, t in zip(jax_t, ts, strict=True)),
                "of_medians": statistics.median(jax_t) / statistics.median(ts),
                "of_minima": min(jax_t) / min(ts),
            }
    if out:
        fastest = min(out, key=lambda name: statistics.median(times[name]))
        out["fastest"] = {"engine": fastest, **out[fastest]}
    return out


def _print_ratios(work: str, ratios: dict, failed: dict) -> None:
    """The ratio lines of a workload, and a line per PyTorch variant that failed or compiled."""
    for name, r in ratios.items():
        label = f"fastest torch ({r['engine']})" if name == "fastest" else name
        print(
            f"{'':14s} {work:9s} ratio jax/{label}: paired {r['paired']:.3f} (median of per-round "
            f"ratios), of medians {r['of_medians']:.3f}, of minima {r['of_minima']:.3f}"
        )
    for name, info in failed.items():
        if info["error"]:
            print(f"{'':14s} {work:9s} {name:13s} FAILED: {info['error']}")
        elif info["compile_s"] is not None:
            print(f"{'':14s} {work:9s} {name:13s} compile (not timed): {info['compile_s']:.1f} s")


def resolve_peak(given: float | None) -> float | None:
    """``--peak-gflops`` if given, else the FMA peak measured now on this process's cores."""
    if given:
        return given
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import fma_peak

    try:
        return fma_peak.measure(cores())
    except Exception as err:  # no compiler, no OpenMP: the % of peak column is left out
        print(f"# FMA peak not measured ({err}); pass --peak-gflops to get the % of peak column")
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    torch = None
    if args.compare_torch:
        import torch

        torch.set_num_threads(cores())
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    tw, th = (int(v) for v in args.tiled_size.lower().split("x"))
    print(
        f"# {platform.processor() or platform.machine()}, {cores()} cores, jax {jax.__version__} "
        f"({jax.default_backend()}), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
        + (f", torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch else "")
    )
    peak = resolve_peak(args.peak_gflops)
    if peak:
        source = "given" if args.peak_gflops else "measured by experiments/perf/fma_peak.py"
        print(f"# fp32 FMA peak: {peak:.1f} GFLOP/s ({source})")
    load = {"before": os.getloadavg()[0]}
    print(f"# load average (1 min) before: {load['before']:.2f}")
    print(
        f"{'model':14s} {'workload':9s} {'engine':13s} {'median_s':>8s} {'min_s':>8s} {'LR_px/s':>11s} "
        f"{'GFLOP/s':>8s} {'peak':>7s}"
    )
    results = []
    variants = args.torch_variants.split(",")
    for arch in args.models.split(","):
        model, variables, net = build_models(arch, args.scale, args.compare_torch)
        for work in args.workloads.split(","):
            extra = {}
            if work in ("infer", "ensemble"):
                fns, pixels, flops, extra = infer_workload(
                    model, variables, net, args.infer_size, work == "ensemble", dtype, variants
                )
            elif work == "tiled":
                fns, pixels, flops = tiled_workload(model, variables, net, (th, tw), args.tile, dtype)
            else:
                batch = 16 if work == "train16" else 4
                fns, pixels, flops, extra = train_workload(
                    model, variables, net, batch, args.patch, dtype, variants
                )
            times = time_alternating(fns, args.repeats)
            for engine, ts in times.items():
                print(_fmt_row(arch, work, engine, ts, pixels, flops, peak), flush=True)
            row = {
                "model": arch,
                "workload": work,
                "times": times,
                "lr_pixels": pixels,
                "flops": flops,
                **extra,
            }
            if net is not None:
                ratios = torch_ratios(times)
                row["ratios"] = ratios
                if "torch" in ratios:  # (the eager figures under their former names)
                    row.update(
                        ratio_jax_torch=ratios["torch"]["of_medians"], ratio_paired=ratios["torch"]["paired"]
                    )
                _print_ratios(work, ratios, extra.get("torch_variants", {}))
            if "compile_s" in extra:
                print(
                    f"{'':14s} {work:9s} first step: lower {extra['lower_s']:.2f} s, compile "
                    f"{extra['compile_s']:.2f} s, first run {extra['first_step_s']:.2f} s"
                )
            results.append(row)
    load["after"] = os.getloadavg()[0]
    print(f"# load average (1 min) after: {load['after']:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"args": vars(args), "peak_gflops": peak, "load_1min": load, "results": results}, fh, indent=1
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
