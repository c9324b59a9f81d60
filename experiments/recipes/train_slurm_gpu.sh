#!/usr/bin/env bash
# EDSR on several GPU nodes with SLURM: one process per GPU, all started by srun.
#
#   sbatch experiments/recipes/train_slurm_gpu.sh            # 2 nodes x 8 GPUs by default (edit #SBATCH)
#   WORKDIR=/shared/runs/x2 BATCH=64 sbatch experiments/recipes/train_slurm_gpu.sh
#
# srun starts SLURM_NTASKS copies of `edsr-jax train`; each finds SLURM_NTASKS > 1 in its
# environment and calls jax.distributed.initialize(), which takes the coordinator (first node of
# the step), the process count and id from SLURM and gives process SLURM_LOCALID the GPU of that
# index. Do not add --gpus-per-task (each task must see all GPUs of its node for that index).
# One process per node with all its GPUs also works: use --ntasks-per-node=1 and
# `export JAX_LOCAL_DEVICE_IDS=0,1,2,3,4,5,6,7`. WORKDIR must be on storage every node shares;
# process 0 writes model.json, logs and TensorBoard events, Orbax writes one set of checkpoints.
# Resubmitting the job resumes from the latest checkpoint (SIGTERM before the time limit, see
# --signal below, makes every process save at the same step).
#
# Global batch and learning rate (the recommendation):
#   * --config.batch_size is the GLOBAL batch, a multiple of the GPU count (16 here).
#   * The paper: batch 16, lr 1e-4, 300k steps, halved at 200k. With batch 16*k use the linear
#     scaling rule, lr = 1e-4 * k, a 1 % warm-up, and steps / decay step divided by k (same number
#     of patches seen). Not measured for EDSR here: for k > 8 check validation PSNR against a
#     smaller-batch run. BATCH defaults to 4 per GPU (k = 4: lr 4e-4, 75k steps).
#
#SBATCH --job-name=edsr
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@300
#SBATCH --output=edsr-%j.out
set -euo pipefail

CONFIG="${CONFIG:-edsr_baseline_x2}"
WORKDIR="${WORKDIR:-$PWD/runs/edsr_x2_slurm}"
DATA_DIR="${DATA_DIR:-}"                                  # TFDS data dir (div2k prepared)
GPUS=$(( ${SLURM_NNODES:-2} * ${SLURM_NTASKS_PER_NODE:-8} ))
BATCH="${BATCH:-$((4 * GPUS))}"
BASE_STEPS="${BASE_STEPS:-300000}"
BASE_DECAY="${BASE_DECAY:-200000}"

if (( BATCH % GPUS )); then
  echo "BATCH=$BATCH must be a multiple of the $GPUS GPUs" >&2; exit 2
fi
LR=$(python3 -c "print(1e-4 * $BATCH / 16)")
STEPS=$(python3 -c "print(max(1, round($BASE_STEPS * 16 / $BATCH)))")
DECAY=$(python3 -c "print(max(1, round($BASE_DECAY * 16 / $BATCH)))")
echo "$GPUS GPUs, global batch $BATCH: learning_rate $LR, $STEPS steps, decay every $DECAY"

# JAX_COORDINATOR_PORT picks the coordinator's port on the first node (default: from the job id).
srun --kill-on-bad-exit=1 edsr-jax train --config "$CONFIG" --workdir "$WORKDIR" \
  --config.batch_size="$BATCH" --config.learning_rate="$LR" --config.warmup_fraction=0.01 \
  --config.num_train_steps="$STEPS" --config.learning_rate_decay_steps="$DECAY" \
  --config.data.data_dir="$DATA_DIR" --config.data.cache_dir="${TMPDIR:-/tmp}/edsr_cache" \
  --config.compilation_cache_dir="${TMPDIR:-/tmp}/edsr_xla_cache"
