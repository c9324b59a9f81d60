#!/usr/bin/env bash
# GPU figures (see experiments/perf/gpu_bench.py): run from the repository root on a machine
# with jax[cuda], flax, optax, orbax and torch installed (no TensorFlow needed, nothing downloaded).
#
#   bash experiments/perf/gpu_bench.sh            # full run, about 6-9 minutes on one H100/H200
#                                                 # (before the train_cli part; not yet timed there)
#   bash experiments/perf/gpu_bench.sh --dry-run  # tiny sizes, any machine (checks the script on CPU)
#
# Results: stdout, and JSON files in $OUT (default ./gpu_bench_out). Each part runs in its own
# process, so peak device memory of the tiled part is per tile size and PyTorch and JAX never hold
# one another's memory pools.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/gpu_bench_out}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# JAX must not grab 75 % of the GPU up front: PyTorch shares the device, and memory is measured.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
PY="${PYTHON:-python3}"
DRY=""
[[ "${1:-}" == "--dry-run" ]] && DRY="--dry-run"

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import jax, flax, optax; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__)"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" || echo "no torch"
  uptime; } 2>&1 | tee "$OUT/env.txt"

if [[ -z "$DRY" ]] && ! "$PY" -c "import jax, sys; sys.exit(jax.default_backend() != 'gpu')"; then
  echo "JAX has no GPU backend here (install jax[cuda12] first); use --dry-run for a CPU check" >&2
  exit 2
fi

status=0
run_part() {  # name, timeout seconds, args...
  local name=$1 limit=$2; shift 2
  echo "=== $name"
  timeout "$limit" "$PY" experiments/perf/gpu_bench.py $DRY --out "$OUT/$name.json" "$@" 2>&1 | grep -v "^WARNING" | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  [[ $rc -ne 0 ]] && { echo "part $name failed (exit $rc)"; status=1; }
}
run_part train 300 --parts train
# The real `edsr-jax train` (EDSR x2, bf16, folder of generated PNGs, 200 steps): steps/s and the
# data-wait share it logs. It needs ml_collections, grain, clu, tensorboard and Pillow: where one
# is missing it reports "skipped" (not a failure).
echo "=== train_cli"
timeout 420 "$PY" experiments/perf/bench_train_cli.py $DRY --out "$OUT/train_cli.json" 2>&1 | grep -v "^WARNING" | tee "$OUT/train_cli.txt"
rc=${PIPESTATUS[0]}
[[ $rc -ne 0 ]] && { echo "part train_cli failed (exit $rc)"; status=1; }
run_part input 150 --parts input --no-torch
for tile in $( [[ -n "$DRY" ]] && echo 32 || echo 192 256 384 ); do
  for dtype in float32 bfloat16; do
    run_part "tiled_${tile}_$dtype" 120 --parts tiled --no-torch --tiles "$tile" --tiled-dtypes "$dtype"
  done
done
exit $status
