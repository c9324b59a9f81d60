#!/usr/bin/env bash
# Train EDSR on DIV2K as in the paper: x2 from scratch, then x3 and x4 initialised from the x2 model
# (Lim et al. 2017, Section 4.1; 300k updates of batch 16, 48x48 LR patches, Adam 1e-4 halved
# every 2e5). Run on an accelerator host (GPU: pip install -e ".[cuda12]", TPU: ".[tpu]").
#
# Environment (all optional):
#   MODEL      baseline | full | both          (default baseline; full = B32, F256, res_scale 0.1)
#   SOURCE     tfds | div2k_folder             (default tfds)
#   DATA_DIR   TFDS data dir, or the folder holding DIV2K_train_HR/ ... for div2k_folder
#   WORKDIR    where the runs go               (default runs)
#   STEPS      updates per scale               (default 300000)
#   BATCH      global batch                    (default 16; a multiple of the device count)
#   PRECISION  auto | fp32 | tf32 | bf16       (default auto: bf16 on GPU/TPU, fp32 on CPU)
#   BENCH_DIR  folder with Set5/Set14/B100/Urban100 (EDSR layout): scored after each run
#   EXTRA      more --config.FIELD=VALUE overrides, space-separated
#
# Example: MODEL=both DATA_DIR=/data/tfds BENCH_DIR=/data/benchmarks bash experiments/recipes/train_edsr_div2k.sh
# Rerunning resumes every run from its latest checkpoint; finished runs are skipped quickly.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODEL="${MODEL:-baseline}"
SOURCE="${SOURCE:-tfds}"
DATA_DIR="${DATA_DIR:-}"
WORKDIR="${WORKDIR:-runs}"
STEPS="${STEPS:-300000}"
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

arch_flags() {  # the architecture of a variant
  case "$1" in
    baseline) echo "--config.model.num_blocks=16 --config.model.num_features=64 --config.model.res_scale=1.0" ;;
    full) echo "--config.model.num_blocks=32 --config.model.num_features=256 --config.model.res_scale=0.1" ;;
  esac
}

train_one() {  # variant scale [init_from]
  local variant="$1" scale="$2" init="${3:-}"
  local run="$WORKDIR/edsr_${variant}_x${scale}"
  echo "=== EDSR $variant x$scale -> $run ${init:+(from $init)}"
  # shellcheck disable=SC2046,SC2086
  edsr-jax train --config default --workdir "$run" \
    $(arch_flags "$variant") --config.scales="$scale" \
    --config.data.source="$SOURCE" --config.data.data_dir="$DATA_DIR" \
    --config.num_train_steps="$STEPS" --config.batch_size="$BATCH" --config.precision="$PRECISION" \
    ${init:+--config.init_from="$init"} $EXTRA
  if [[ -n "$BENCH_DIR" ]]; then
    edsr-jax eval --checkpoint "$run" --data-dir "$BENCH_DIR" --datasets Set5,Set14,B100,Urban100 \
      --scales "$scale" --json "$run/benchmarks.json" --no-progress
  fi
}

mkdir -p "$WORKDIR"
for variant in "${variants[@]}"; do
  train_one "$variant" 2
  train_one "$variant" 3 "$WORKDIR/edsr_${variant}_x2"
  train_one "$variant" 4 "$WORKDIR/edsr_${variant}_x2"
done
