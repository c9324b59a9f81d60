#!/usr/bin/env bash
# Reproduce the paper's Table 3 with the official weights: score the 8 published models by name on
# Set5, Set14, B100, Urban100 (Y, shave s) and DIV2K validation (RGB, shave s+6), without and with
# the x8 self-ensemble (EDSR+/MDSR+), and write a Markdown table beside the paper's numbers. Each
# model is downloaded once (verified by SHA-256, converted without PyTorch) into the edsr-jax model
# cache (`edsr-jax models` lists them). An accelerator is advised: the full EDSR with
# self-ensemble on Urban100 and DIV2K is hours on a CPU.
#
# Environment:
#   BENCH_DIR    folder with Set5/ Set14/ B100/ Urban100/ and $DIV2K_SET/ in the EDSR layout
#                (<SET>/HR/*.png, LR_bicubic/X<s>/<name>x<s>.png; missing LR files are made with the
#                MATLAB-exact bicubic) (required)
#   DIV2K_SET    the DIV2K validation folder's name inside BENCH_DIR (default DIV2K_valid, i.e.
#                BENCH_DIR/DIV2K_valid/HR/0801.png ... 0900.png)
#   OUT          results folder (default runs/table3): json/, table3.md
#   TILE         LR tile size passed to eval (default empty: whole images)
#   MODELS       space-separated subset of the published names (default: all 8)
#   WEIGHTS_DIR  optional: a folder holding the official .pt files, used instead of downloading
#                (it becomes EDSR_JAX_WEIGHTS_MIRROR)
#   EDSR_JAX_CACHE, EDSR_JAX_OFFLINE: where the converted models are kept; no network
#
# Example: BENCH_DIR=/data/benchmarks bash experiments/recipes/reproduce_table3.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${BENCH_DIR:?set BENCH_DIR to the folder holding Set5, Set14, B100, Urban100 and DIV2K_valid}"
DIV2K_SET="${DIV2K_SET:-DIV2K_valid}"
OUT="${OUT:-runs/table3}"
TILE="${TILE:-}"
if [[ -n "${WEIGHTS_DIR:-}" ]]; then
  export EDSR_JAX_WEIGHTS_MIRROR="$WEIGHTS_DIR"
fi

MODELS="${MODELS:-edsr_baseline_x2 edsr_baseline_x3 edsr_baseline_x4 edsr_x2 edsr_x3 edsr_x4 mdsr_baseline mdsr}"
DATASETS="Set5,Set14,B100,Urban100,$DIV2K_SET"

mkdir -p "$OUT/json"
# shellcheck disable=SC2086
edsr-jax models --fetch $MODELS  # (fails at once, naming the model, if one cannot be had)
for name in $MODELS; do
  for plus in "" "--self-ensemble"; do
    json="$OUT/json/${name}${plus:+_plus}.json"
    [[ -f "$json" ]] && { echo "have $json"; continue; }
    echo "=== $name ${plus:-(single pass)}"
    # shellcheck disable=SC2086
    edsr-jax eval --model "$name" --data-dir "$BENCH_DIR" --datasets "$DATASETS" \
      $plus ${TILE:+--tile "$TILE"} --json "$json" --no-progress
  done
done
python experiments/tools/results_table.py "$OUT"/json/*.json > "$OUT/table3.md"
echo "wrote $OUT/table3.md"
cat "$OUT/table3.md"
