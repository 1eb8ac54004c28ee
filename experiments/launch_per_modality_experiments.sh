#!/usr/bin/env bash
# Launch the per-modality projection ablations (encoder only, decoder only, both) under one
# dated W&B project, so their loss curves and probes sit next to each other in W&B.
#
#   ./tools/bazel run //experiments:per_modality_group
#   CLUSTER=slurm NUM_GPUS=8 ./experiments/launch_per_modality_experiments.sh
#
# Every launch goes through the launcher's gate (clean tree, pushed commit, the tests of what
# the variant depends on pass; `./tools/bazel run //launcher/gate:launch_tests -- --list
# //experiments:<variant>` lists them). The first failure stops the script (set -e):
# later variants are not launched, earlier ones keep running.
set -euo pipefail

CLUSTER="${CLUSTER:-slurm}"
NUM_GPUS="${NUM_GPUS:-8}"
PRIORITY="${PRIORITY:-normal}"
WANDB_PROJECT="${WANDB_PROJECT:-$(date +%Y_%m_%d)_per_modality_projection_experiments}"
# Optional: scheduler partitions to try, e.g. "[gpu-a,gpu-b]"; empty: the cluster's list.
CLUSTERS="${CLUSTERS:-}"
# Optional: appended to each run name (run names must contain the variant's name).
RUN_SUFFIX="${RUN_SUFFIX:-}"
BAZEL="${BAZEL:-./tools/bazel}"

VARIANTS=(
  base_encoder_per_mod_proj
  base_decoder_per_mod_proj
  base_both_per_mod_proj
)

cd "${BUILD_WORKSPACE_DIRECTORY:-$(git rev-parse --show-toplevel)}"

echo "=================================================================="
echo "Launching the per-modality projection experiments"
echo "Cluster:     ${CLUSTER}${CLUSTERS:+ (partitions ${CLUSTERS})}"
echo "GPUs:        ${NUM_GPUS} per node"
echo "Priority:    ${PRIORITY}"
echo "W&B project: ${WANDB_PROJECT}"
echo "Variants:    ${VARIANTS[*]}"
echo "=================================================================="

flags=(
  "--launch.num_gpus=${NUM_GPUS}"
  "--launch.priority=${PRIORITY}"
  "--trainer.callbacks.wandb.project=${WANDB_PROJECT}"
)
if [[ -n "${CLUSTERS}" ]]; then
  flags+=("--launch.clusters=${CLUSTERS}")
fi

current=""
trap 'echo "FAILED while launching ${current}; variants after it were not launched." >&2' ERR

summary=()
total=${#VARIANTS[@]}
index=0
for variant in "${VARIANTS[@]}"; do
  index=$((index + 1))
  current="${variant}"
  run_name="${variant}${RUN_SUFFIX}"
  echo ""
  echo "[${index}/${total}] ${variant}: run ${run_name} on ${CLUSTER}..."
  output="$("${BAZEL}" run "//experiments:${variant}" -- launch "${run_name}" "${CLUSTER}" "${flags[@]}")"
  echo "${output}"
  job="$(grep -o 'job [^ ]*' <<<"${output}" | head -n 1 || true)"
  summary+=("${run_name}: ${job:-launched}")
  echo "[${index}/${total}] ${variant} launched"
done

echo ""
echo "=================================================================="
echo "All ${total} variants launched into W&B project ${WANDB_PROJECT}:"
for line in "${summary[@]}"; do
  echo "  ${line}"
done
echo "Baseline to compare with: base (same project if launched with the same flags)."
echo "=================================================================="
