#!/usr/bin/env bash
# Reproduce the paper's Table 3 with the official weights: convert the 8 EDSR-PyTorch files, score
# each on Set5, Set14, B100, Urban100 (Y, shave s) and DIV2K validation (RGB, shave s+6), without
# and with the x8 self-ensemble (EDSR+/MDSR+), and write a Markdown table beside the paper's numbers.
# Needs torch for the conversion (pip install torch==2.13.0, CPU is fine). An accelerator is
# advised: the full EDSR with self-ensemble on Urban100 and DIV2K is hours on a CPU.
#
# Environment:
#   WEIGHTS_DIR  folder holding the 8 official .pt files (required)
#   BENCH_DIR    folder with Set5/ Set14/ B100/ Urban100/ and $DIV2K_SET/ in the EDSR layout
#                (<SET>/HR/*.png, LR_bicubic/X<s>/<name>x<s>.png; missing LR files are made with the
#                MATLAB-exact bicubic) (required)
#   DIV2K_SET    the DIV2K validation folder's name inside BENCH_DIR (default DIV2K_valid, i.e.
#                BENCH_DIR/DIV2K_valid/HR/0801.png ... 0900.png)
#   OUT          results folder (default runs/table3): models/, json/, table3.md
#   TILE         LR tile size passed to eval (default empty: whole images)
#   MODELS       space-separated subset of the names below (default: all 8)
#
# Example: WEIGHTS_DIR=~/edsr_weights BENCH_DIR=/data/benchmarks bash experiments/recipes/reproduce_table3.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

: "${WEIGHTS_DIR:?set WEIGHTS_DIR to the folder with the official .pt files}"
: "${BENCH_DIR:?set BENCH_DIR to the folder holding Set5, Set14, B100, Urban100 and DIV2K_valid}"
DIV2K_SET="${DIV2K_SET:-DIV2K_valid}"
OUT="${OUT:-runs/table3}"
TILE="${TILE:-}"

# name -> file and scales
declare -A FILES=(
  [edsr_baseline_x2]=edsr_baseline_x2-1bc95232.pt [edsr_baseline_x3]=edsr_baseline_x3-abf2a44e.pt
  [edsr_baseline_x4]=edsr_baseline_x4-6b446fab.pt [edsr_x2]=edsr_x2-0edfb8a3.pt
  [edsr_x3]=edsr_x3-ea3ef2c6.pt [edsr_x4]=edsr_x4-4f62e9ef.pt
  [mdsr_baseline]=mdsr_baseline-a00cab12.pt [mdsr]=mdsr-4a78bedf.pt
)
declare -A SCALES=(
  [edsr_baseline_x2]=2 [edsr_baseline_x3]=3 [edsr_baseline_x4]=4 [edsr_x2]=2 [edsr_x3]=3 [edsr_x4]=4
  [mdsr_baseline]=2,3,4 [mdsr]=2,3,4
)
MODELS="${MODELS:-edsr_baseline_x2 edsr_baseline_x3 edsr_baseline_x4 edsr_x2 edsr_x3 edsr_x4 mdsr_baseline mdsr}"
DATASETS="Set5,Set14,B100,Urban100,$DIV2K_SET"

mkdir -p "$OUT/models" "$OUT/json"
for name in $MODELS; do
  file="$WEIGHTS_DIR/${FILES[$name]:?unknown model name $name}"
  [[ -f "$file" ]] || { echo "missing $file" >&2; exit 2; }
  model="$OUT/models/$name"
  [[ -f "$model/model.json" ]] || edsr-jax convert-torch "$file" --out "$model"
  for plus in "" "--self-ensemble"; do
    json="$OUT/json/${name}${plus:+_plus}.json"
    [[ -f "$json" ]] && { echo "have $json"; continue; }
    echo "=== $name ${plus:-(single pass)}"
    # shellcheck disable=SC2086
    edsr-jax eval --checkpoint "$model" --data-dir "$BENCH_DIR" --datasets "$DATASETS" \
      --scales "${SCALES[$name]}" $plus ${TILE:+--tile "$TILE"} --json "$json" --no-progress
  done
done
python experiments/tools/results_table.py "$OUT"/json/*.json > "$OUT/table3.md"
echo "wrote $OUT/table3.md"
cat "$OUT/table3.md"
