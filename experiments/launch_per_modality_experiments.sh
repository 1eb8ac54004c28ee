#!/usr/bin/env bash
# Launch the per-modality projection study: base and the three ablations (encoder only,
# decoder only, both) x 3 seeds under one dated W&B project, grouped as the study.
#
#   ./tools/bazel run //experiments:per_modality_group
#   CLUSTER=slurm NUM_GPUS=8 ./experiments/launch_per_modality_experiments.sh
#
# The thin form of the guide's launch script: the study (experiments/studies/
# per_modality_projection.py) does the work. One gate runs the launch tests of all four
# experiments; one image is pushed; every run is submitted (a job array on Slurm), with
# hyperparameters checked identical outside each variant's CHANGES before anything is
# pushed. Running it again submits only the runs that are missing or failed. Then:
#   ./tools/bazel run //experiments/studies:per_modality_projection -- status  "$CLUSTER"
#   ./tools/bazel run //experiments/studies:per_modality_projection -- compare "$CLUSTER"
set -euo pipefail

CLUSTER="${CLUSTER:-slurm}"
# Empty: the study's own values (8 GPUs per run, normal priority, today's dated project).
NUM_GPUS="${NUM_GPUS:-}"
PRIORITY="${PRIORITY:-}"
WANDB_PROJECT="${WANDB_PROJECT:-}"
# Optional: scheduler partitions to try, e.g. "[gpu-a,gpu-b]"; empty: the cluster's list.
CLUSTERS="${CLUSTERS:-}"
BAZEL="${BAZEL:-./tools/bazel}"

cd "${BUILD_WORKSPACE_DIRECTORY:-$(git rev-parse --show-toplevel)}"

flags=()
if [[ -n "${NUM_GPUS}" ]]; then flags+=("--launch.num_gpus=${NUM_GPUS}"); fi
if [[ -n "${PRIORITY}" ]]; then flags+=("--launch.priority=${PRIORITY}"); fi
if [[ -n "${CLUSTERS}" ]]; then flags+=("--launch.clusters=${CLUSTERS}"); fi
if [[ -n "${WANDB_PROJECT}" ]]; then flags+=("--project=${WANDB_PROJECT}"); fi

echo "launching the per-modality projection study on ${CLUSTER}${flags[*]:+ (${flags[*]})}" >&2
exec "${BAZEL}" run //experiments/studies:per_modality_projection -- launch "${CLUSTER}" "${flags[@]}"
