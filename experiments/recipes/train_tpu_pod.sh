#!/usr/bin/env bash
# EDSR on a Cloud TPU slice with several hosts (v4-16/v4-32, v5litepod-16/-32 ...).
#
# Every worker (host) of the slice runs the same `edsr-jax train` command; --distributed makes
# each call jax.distributed.initialize(), which reads the coordinator, process count and process
# id from the TPU metadata. The chips form one data axis in process order (each host feeds one
# contiguous block of the global batch, whatever order the torus lists them in); all processes
# write one set of Orbax checkpoints to the shared gs:// workdir (process 0 writes model.json,
# logs and TensorBoard events). The `tpu` extra installs gcsfs, through which gs:// paths are
# reached without TensorFlow (docs/accelerators.md); DATA_DIR may be gs:// too (TFDS prepared as
# ArrayRecord), while the image and compilation caches stay on each worker's local disk.
# Rerunning the script resumes from the latest checkpoint (also after a preemption: SIGTERM makes
# every process save at the same step).
#
# Global batch and learning rate (the recommendation):
#   * config.batch_size is the GLOBAL batch and must be a multiple of the number of chips
#     (jax.device_count(): 16 on a v4-32 or a v5litepod-16).
#   * The paper's recipe is batch 16, lr 1e-4. To use a slice, scale the batch by k (16*k) and
#     follow the linear scaling rule: lr = 1e-4 * k with a short warm-up, and divide the number
#     of steps and the decay step by k so the run sees the same number of patches. This is the
#     standard recipe for data-parallel SGD/Adam up to moderate k; it was NOT measured for EDSR
#     here, so for k > 8 compare the validation PSNR after the first decay with a k <= 8 run.
#     BATCH below defaults to 4 examples per chip.
#
# Usage (from a machine with gcloud; the TPU VM must exist and have this repository installed,
# see SETUP=1):
#   TPU_NAME=my-v4-32 ZONE=us-central2-b WORKDIR=gs://my-bucket/edsr_x2 \
#   DATA_DIR=gs://my-bucket/tensorflow_datasets bash experiments/recipes/train_tpu_pod.sh
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME}"
: "${ZONE:?set ZONE}"
: "${WORKDIR:?set WORKDIR (a gs:// path every host can write)}"
CONFIG="${CONFIG:-edsr_baseline_x2}"
DATA_DIR="${DATA_DIR:-}"                 # TFDS data dir with div2k prepared (e.g. gs://.../tensorflow_datasets)
CHIPS="${CHIPS:-16}"                     # jax.device_count() of the slice
BATCH="${BATCH:-$((4 * CHIPS))}"         # global batch; 16 = the paper's
BASE_STEPS="${BASE_STEPS:-300000}"       # the paper's steps at batch 16
BASE_DECAY="${BASE_DECAY:-200000}"       # the paper's decay step at batch 16
REPO="${REPO:-~/edsr-jax}"               # checkout on every worker

if (( BATCH % CHIPS )); then
  echo "BATCH=$BATCH must be a multiple of CHIPS=$CHIPS" >&2; exit 2
fi
K=$(python3 -c "print($BATCH / 16)")
LR=$(python3 -c "print(1e-4 * $BATCH / 16)")
STEPS=$(python3 -c "print(max(1, round($BASE_STEPS * 16 / $BATCH)))")
DECAY=$(python3 -c "print(max(1, round($BASE_DECAY * 16 / $BATCH)))")
echo "global batch $BATCH (k=$K): learning_rate $LR, $STEPS steps, decay every $DECAY"

ssh_all() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" --worker=all --command="$1"
}

if [[ "${SETUP:-0}" == 1 ]]; then  # install on every worker (once)
  ssh_all "git clone ${GIT_URL:?set GIT_URL} $REPO 2>/dev/null || git -C $REPO pull; cd $REPO && pip install -e '.[tpu]'"
fi

ssh_all "cd $REPO && edsr-jax train --distributed --config $CONFIG --workdir $WORKDIR \
  --config.batch_size=$BATCH --config.learning_rate=$LR --config.warmup_fraction=0.01 \
  --config.num_train_steps=$STEPS --config.learning_rate_decay_steps=$DECAY \
  --config.data.data_dir=$DATA_DIR --config.data.cache_dir=/tmp/edsr_cache \
  --config.precision=bf16 --config.compilation_cache_dir=/tmp/edsr_xla_cache"
