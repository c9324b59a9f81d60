#!/usr/bin/env bash
# Train MDSR (one network for x2, x3 and x4) on DIV2K as in the paper: each minibatch uses one
# random scale and updates only the shared and that scale's parameters; 650k updates of batch 16,
# 48x48 LR patches at every scale. Run on an accelerator host (".[cuda12]" or ".[tpu]").
#
# Environment (all optional):
#   MODEL      baseline | full | both          (default baseline; full = B80, F64)
#   SOURCE     tfds | div2k_folder             (default tfds)
#   DATA_DIR   TFDS data dir, or the folder holding DIV2K_train_HR/ ... for div2k_folder
#   WORKDIR    where the runs go               (default runs)
#   STEPS      updates                         (default 650000)
#   BATCH      global batch                    (default 16)
#   PRECISION  auto | fp32 | tf32 | bf16       (default auto: bf16 on GPU/TPU, fp32 on CPU)
#   BENCH_DIR  folder with Set5/Set14/B100/Urban100 (EDSR layout): scored after each run
#   EXTRA      more --config.FIELD=VALUE overrides, space-separated
#
# Example: DATA_DIR=/data/tfds BENCH_DIR=/data/benchmarks bash experiments/recipes/train_mdsr_div2k.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL="${MODEL:-baseline}"
SOURCE="${SOURCE:-tfds}"
DATA_DIR="${DATA_DIR:-}"
WORKDIR="${WORKDIR:-runs}"
STEPS="${STEPS:-650000}"
BATCH="${BATCH:-16}"
PRECISION="${PRECISION:-auto}"
BENCH_DIR="${BENCH_DIR:-}"
EXTRA="${EXTRA:-}"

case "$MODEL" in
  baseline) variants=(baseline) ;;
  full) variants=(full) ;;
  both) variants=(baseline full) ;;
  *) echo "MODEL must be baseline, full or both, got '$MODEL'" >&2; exit 2 ;;
esac

mkdir -p "$WORKDIR"
for variant in "${variants[@]}"; do
  case "$variant" in
    baseline) blocks=16 ;;
    full) blocks=80 ;;
  esac
  run="$WORKDIR/mdsr_${variant}"
  echo "=== MDSR $variant (B$blocks, F64, x2/x3/x4) -> $run"
  # shellcheck disable=SC2086
  edsr-jax train --config default --workdir "$run" \
    --config.model.arch=mdsr --config.model.num_blocks="$blocks" --config.model.num_features=64 \
    --config.model.res_scale=1.0 --config.scales=2,3,4 \
    --config.data.source="$SOURCE" --config.data.data_dir="$DATA_DIR" \
    --config.num_train_steps="$STEPS" --config.batch_size="$BATCH" --config.precision="$PRECISION" $EXTRA
  if [[ -n "$BENCH_DIR" ]]; then
    edsr-jax eval --checkpoint "$run" --data-dir "$BENCH_DIR" --datasets Set5,Set14,B100,Urban100 \
      --scales 2,3,4 --json "$run/benchmarks.json" --no-progress
  fi
done
