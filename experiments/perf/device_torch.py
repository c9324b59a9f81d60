"""The PyTorch half of ``device_check.py``: the same models trained in PyTorch's fast modes.

Run by ``device_check.py`` in a process of its own (JAX and PyTorch never share one)::

    python experiments/perf/device_torch.py PLAN.json ROWS.jsonl

The models are the repository's independent PyTorch EDSR/MDSR (``tests/support/torch_reference.py``),
trained as a tuned PyTorch user would: channels-last model and batches, AMP bf16 autocast, the
fused Adam (0.9, 0.999, 1e-8), L1 loss in float32, uint8 batches already on the device. Modes:

* ``eager``: the step as written.
* ``compile``: ``torch.compile`` of the model (``plan["torch_compile_backend"]``: Inductor on the
  GPU; the dry run uses ``aot_eager``, which runs the same Dynamo and AOTAutograd path without
  Inductor's C++/Triton code generation, minutes on a small CPU). Its compile seconds are the
  first calls (one per MDSR scale, each traced apart).
* ``cuda_graph``: the whole step (forward, backward, fused capturable Adam) captured once in a
  CUDA graph and replayed; needs CUDA (without it the row says so).

Each step row: ms/step timed over many steps with one synchronisation at the end (MDSR cycles
through its scales step by step). Rows are JSON lines appended as they are measured; the
``versions`` row and the ``ceiling`` rows (a bf16 GEMM, a device copy) come first.
"""

from __future__ import annotations

import json
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Calls of a torch.compile'd step made while compiling, per scale (the second catches a recompile).
COMPILE_CALLS = 2


def emit(path: str, row: dict) -> None:
    """Appends ``row`` to the JSONL file and prints it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
    print(f"row {json.dumps(shown)}", flush=True)


def error_text(err: BaseException) -> str:
    """One line naming an exception."""
    return f"{type(err).__name__}: {' '.join(str(err).split())[:400]}"


class Torch:
    """The device, its synchronisation and autocast type, and the helpers that need torch."""

    def __init__(self, threads: int = 0):
        import torch

        self.torch = torch
        if threads:
            torch.set_num_threads(threads)  # (this worker's own process)
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        torch.backends.cudnn.benchmark = True

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def timed(self, step, seconds: float, max_calls: int) -> tuple[float, int]:
        """Mean seconds per ``step()`` over 2 to ``max_calls`` calls filling about ``seconds``."""
        t0 = time.perf_counter()
        step()
        self.sync()
        once = max(time.perf_counter() - t0, 1e-6)
        n = int(min(max_calls, max(2, seconds / once)))
        self.sync()
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        self.sync()
        return (time.perf_counter() - t0) / n, n


def versions(t: Torch) -> dict:
    """The versions row."""
    torch = t.torch
    row = {
        "kind": "versions",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "device": "cpu",
    }
    if t.cuda:
        props = torch.cuda.get_device_properties(0)
        row.update(
            device=props.name, capability=f"{props.major}.{props.minor}", sms=props.multi_processor_count
        )
    return row


def ceilings(t: Torch, plan: dict) -> list[dict]:
    """bf16 GEMM TFLOP/s and copy TB/s (``x + 1`` on float32, bytes read and written)."""
    torch, n = t.torch, plan["gemm_n"]
    g = torch.Generator(device=t.device).manual_seed(0)
    a = torch.randn(n, n, device=t.device, dtype=torch.bfloat16, generator=g)
    b = torch.randn(n, n, device=t.device, dtype=torch.bfloat16, generator=g)
    per_gemm, gemms = t.timed(lambda: a @ b, plan["seconds_per_row"], 1000)
    x = torch.rand(plan["copy_mib"] * 2**20 // 4, device=t.device, generator=g)
    per_copy, copies = t.timed(lambda: x + 1.0, plan["seconds_per_row"], 1000)
    return [
        {
            "kind": "ceiling",
            "what": "gemm_bf16",
            "n": n,
            "calls": gemms,
            "tflops": 2.0 * n**3 / per_gemm / 1e12,
        },
        {
            "kind": "ceiling",
            "what": "copy",
            "mib": plan["copy_mib"],
            "calls": copies,
            "tb_per_s": 2.0 * x.numel() * 4 / per_copy / 1e12,
        },
    ]


def build(t: Torch, spec: dict):
    """The reference model of ``spec`` in train mode, channels-last, on the device."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
    from support import torch_reference

    scale = spec["scales"][0] if spec["arch"] == "edsr" else spec["scales"]
    net = torch_reference.build_model(
        spec["arch"], scale, spec["num_blocks"], spec["num_features"], spec["res_scale"]
    )
    return net.train().to(t.device, memory_format=t.torch.channels_last)


def batches(t: Torch, spec: dict, batch: int, patch: int) -> list[tuple]:
    """``(scale_index, lr, hr)`` uint8 channels-last batches on the device, one per scale."""
    torch = t.torch
    g = torch.Generator(device=t.device).manual_seed(0)
    out = []
    for i, s in enumerate(spec["scales"]):
        lr = torch.randint(0, 256, (batch, 3, patch, patch), dtype=torch.uint8, device=t.device, generator=g)
        hr = torch.randint(
            0, 256, (batch, 3, patch * s, patch * s), dtype=torch.uint8, device=t.device, generator=g
        )
        cl = torch.channels_last
        out.append((i, lr.contiguous(memory_format=cl), hr.contiguous(memory_format=cl)))
    return out


def step_fn(t: Torch, forward, opt, data: list[tuple], mdsr: bool, cache: bool = True):
    """One training step per call, cycling through ``data`` (MDSR's scales)."""
    torch = t.torch
    counter = [0]

    def step():
        index, lr, hr = data[counter[0] % len(data)]
        counter[0] += 1
        opt.zero_grad(set_to_none=True)
        with torch.autocast(t.device, dtype=torch.bfloat16, cache_enabled=cache):
            sr = forward(lr.float(), index) if mdsr else forward(lr.float())
        loss = torch.nn.functional.l1_loss(sr.float(), hr.float())
        loss.backward()
        opt.step()
        return loss

    return step


def adam(t: Torch, net, capturable: bool = False):
    """The fused Adam of the paper's settings."""
    return t.torch.optim.Adam(
        net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8, fused=True, capturable=capturable
    )


def graph_step(t: Torch, net, data: list[tuple]):
    """The whole step captured in a CUDA graph (after warm-up steps on a side stream); returns
    the replay function."""
    torch = t.torch
    opt = adam(t, net, capturable=True)
    step = step_fn(t, net, opt, data[:1], mdsr=False, cache=False)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    _, lr, hr = data[0]
    with torch.cuda.graph(graph):
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            sr = net(lr.float())
        loss = torch.nn.functional.l1_loss(sr.float(), hr.float())
        loss.backward()
        opt.step()
    return graph.replay


def step_rows(t: Torch, plan: dict, item: dict) -> list[dict]:
    """One mode of one model: compile seconds (torch.compile) and ms/step."""
    spec = plan["models"][item["model"]]
    mode, mdsr = item["mode"], spec["arch"] == "mdsr"
    row = {
        "item": item["item"],
        "kind": "step",
        "model": item["model"],
        "mode": mode,
        "batch": plan["batch"],
        "patch": plan["patch"],
    }
    if mode == "cuda_graph" and not t.cuda:
        return [{**row, "skipped": "CUDA graphs need CUDA (this is a CPU run)"}]
    t.torch.manual_seed(0)
    net = build(t, spec)
    data = batches(t, spec, plan["batch"], plan["patch"])
    t0 = time.perf_counter()
    if mode == "cuda_graph":
        step = graph_step(t, net, data)
    else:
        forward = net
        if mode == "compile":
            t.torch._dynamo.reset()  # (each model's compile from scratch, none counted against another's)
            forward = t.torch.compile(net, backend=plan["torch_compile_backend"])
        step = step_fn(t, forward, adam(t, net), data, mdsr)
        for _ in range(COMPILE_CALLS * len(data) if mode == "compile" else 1):
            step()
        t.sync()
    row["compile_s" if mode == "compile" else "setup_s"] = time.perf_counter() - t0
    per_step, calls = t.timed(step, plan["seconds_per_row"], plan["max_calls"] * plan["k"])
    return [{**row, "calls": calls, "ms_per_step": 1e3 * per_step}]


def run(plan: dict, rows_path: str) -> None:
    """Versions, ceilings, then every item of ``plan["torch"]`` in order; without PyTorch, one
    row per item saying so; an item that would start within ``plan["reserve_s"]`` of the deadline
    gets a "skipped" row."""
    try:
        t = Torch(plan["torch_threads"])
    except ImportError as err:
        for item in [{"item": "torch versions"}, *plan["torch"]]:
            emit(rows_path, {"item": item["item"], "skipped": f"PyTorch is not importable here ({err})"})
        return
    emit(rows_path, {"item": "torch versions", **versions(t)})
    tasks = {
        "ceilings": lambda item: [{"item": item["item"], **r} for r in ceilings(t, plan)],
        "step": lambda item: step_rows(t, plan, item),
    }
    for item in plan["torch"]:
        if time.time() > plan["deadline"] - plan["reserve_s"]:
            emit(rows_path, {"item": item["item"], "skipped": "the part's time was spent"})
            continue
        t0 = time.perf_counter()
        try:
            produced = tasks[item["do"]](item)
        except Exception as err:  # torch.compile or a graph capture may fail: a row, not a crash
            produced = [{"item": item["item"], "error": error_text(err)}]
        for row in produced:
            emit(rows_path, {**row, "item_s": time.perf_counter() - t0})


def main(argv=None) -> int:
    plan_path, rows_path = (sys.argv[1:] if argv is None else argv)[:2]
    with open(plan_path, encoding="utf-8") as f:
        run(json.load(f), rows_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
