"""Measures this CPU's fp32 FMA peak (GFLOP/s) with a small C kernel, on N threads.

The kernel keeps 12 independent vector accumulators busy with fused multiply-adds (enough to
cover the FMA latency on every x86 core of the last decade), in the widest vector this CPU
advertises (AVX-512, AVX/AVX2 or 128-bit), compiled with the system C compiler and
``-march=native``. Each FMA counts as 2 FLOPs. Benchmarks quote their achieved GFLOP/s as a
fraction of this figure (``experiments/perf/bench_models.py`` uses it when ``--peak-gflops`` is not given).

    python experiments/perf/fma_peak.py              # all cores this process may use
    python experiments/perf/fma_peak.py --threads 1
    python experiments/perf/fma_peak.py --gemm       # also a 2048^3 fp32 GEMM in numpy and XLA

Needs a C compiler with OpenMP (``cc``/``gcc``); prints a one-line error and exits 2 without one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

_SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
typedef float vec __attribute__((vector_size(VBYTES)));
#define LANES (VBYTES / 4)
int main(int argc, char **argv) {
  long iters = atol(argv[1]);
  double best = 0.0;
  float sink = 0.0f;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = omp_get_wtime();
    #pragma omp parallel reduction(+:sink)
    {
      vec a[12], m, c;
      for (int k = 0; k < LANES; k++) { m[k] = 0.9999999f; c[k] = 1e-7f; }
      for (int j = 0; j < 12; j++)
        for (int k = 0; k < LANES; k++) a[j][k] = 1.0f + 0.1f * j + 0.01f * omp_get_thread_num();
      for (long i = 0; i < iters; i++) {
        a[0] = a[0] * m + c; a[1] = a[1] * m + c; a[2] = a[2] * m + c; a[3] = a[3] * m + c;
        a[4] = a[4] * m + c; a[5] = a[5] * m + c; a[6] = a[6] * m + c; a[7] = a[7] * m + c;
        a[8] = a[8] * m + c; a[9] = a[9] * m + c; a[10] = a[10] * m + c; a[11] = a[11] * m + c;
      }
      for (int j = 1; j < 12; j++) a[0] += a[j];
      for (int k = 0; k < LANES; k++) sink += a[0][k];
    }
    double dt = omp_get_wtime() - t0;
    double flops = (double)omp_get_max_threads() * iters * 12 * LANES * 2;
    if (flops / dt > best) best = flops / dt;
  }
  printf("%.3f %g\n", best / 1e9, sink);
  return 0;
}
"""


def vector_bytes() -> int:
    """Widest fp32 vector this CPU advertises (Linux /proc/cpuinfo; 32 when unknown)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return 32
    if "avx512f" in flags:
        return 64
    if "avx" in flags or "avx2" in flags:
        return 32
    return 16


def measure(threads: int | None = None, seconds: float = 0.3) -> float:
    """The fp32 FMA peak in GFLOP/s on ``threads`` threads (default: the usable cores).

    Raises RuntimeError if no C compiler with OpenMP is available.
    """
    threads = threads or len(os.sched_getaffinity(0))
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc or gcc) on PATH to build the FMA kernel")
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "fma.c"), os.path.join(tmp, "fma")
        with open(src, "w") as fh:
            fh.write(_SOURCE)
        cmd = [compiler, "-O2", "-march=native", "-ffp-contract=fast", "-fopenmp"]
        build = subprocess.run(
            cmd + [f"-DVBYTES={vector_bytes()}", src, "-o", exe], capture_output=True, text=True
        )
        if build.returncode:
            raise RuntimeError(f"building the FMA kernel failed: {build.stderr.strip()[:300]}")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="spread")
        # Calibrate: one short run, then enough iterations for about ``seconds`` per repeat.
        probe = 2_000_000
        gflops = float(
            subprocess.run(
                [exe, str(probe)], env=env, capture_output=True, text=True, check=True
            ).stdout.split()[0]
        )
        flops_per_iter = threads * 12 * (vector_bytes() // 4) * 2
        iters = max(probe, int(seconds * gflops * 1e9 / flops_per_iter))
        for _ in range(3):  # best of 3 (each itself best of 3): a shared VM's clock dips at times
            out = subprocess.run([exe, str(iters)], env=env, capture_output=True, text=True, check=True)
            gflops = max(gflops, float(out.stdout.split()[0]))
        return gflops


def gemm_gflops(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best-of-``repeats`` fp32 GFLOP/s of an n x n x n matrix product in numpy and (if present) XLA."""
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    runs = {"numpy": lambda: a @ b}
    try:
        import jax

        ja, jb = jax.device_put(a), jax.device_put(b)
        matmul = jax.jit(lambda x, y: x @ y)
        runs["xla"] = lambda: matmul(ja, jb).block_until_ready()
    except ImportError:
        pass
    out = {}
    for name, fn in runs.items():
        fn()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        out[name] = 2.0 * n**3 / best / 1e9
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="default: the cores this process may use")
    p.add_argument("--gemm", action="store_true", help="also time a 2048^3 fp32 GEMM (numpy, XLA)")
    args = p.parse_args(argv)
    try:
        peak = measure(args.threads)
    except (RuntimeError, subprocess.CalledProcessError) as err:
        print(f"fma_peak: {err}", file=sys.stderr)
        return 2
    threads = args.threads or len(os.sched_getaffinity(0))
    print(f"fp32 FMA peak: {peak:.1f} GFLOP/s on {threads} thread(s), {vector_bytes() * 8}-bit vectors")
    if args.gemm:
        for name, rate in gemm_gflops().items():
            print(f"fp32 GEMM 2048^3 ({name}): {rate:.1f} GFLOP/s = {100 * rate / peak:.0f} % of that peak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
