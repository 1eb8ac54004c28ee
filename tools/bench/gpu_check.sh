#!/usr/bin/env bash
# The GPU readiness kit: what a machine with CUDA GPUs must pass before the first GPU run.
#
#   ./tools/bazel run //tools/bench:gpu_check [-- --out DIR]
#   tools/bench/gpu_check.sh [--out DIR] [--plan]        # from a checkout (e.g. the cuda image)
#
# In under 10 minutes (each step has a time limit; 9.5 minutes in all):
#   a. model_tests   pytest models/ (tools/bench/parallel_pytest.py: a process per package,
#                    several at once) with TERRA_LAB_TEST_DEVICE=cuda: the tests that take the
#                    `device` fixture (conftest.py) run on CUDA, the trainer's tests pick the
#                    GPU themselves (models/train/distributed.py), the rest stay on the CPU;
#   b. parity_bf16   models/latent_mim/parity_bf16_test.py on CUDA: one v1 step in bf16
#                    autocast against fp32, within the tolerances stated there;
#   c. train_ddp, train_fsdp   20 steps of the base recipe, one process per GPU (torchrun,
#                    NCCL, bf16 autocast), with --train_module.parallelism=ddp and =fsdp;
#   d. train_step    tools/bench/train_step.py --device cuda --dtype bf16: seconds per step,
#                    GFLOP/s and MFU against the GPU's dense bf16 peak.
# Each step's log and summary.md go to --out (default: runs/gpu_check/<UTC time>); the
# summary is printed at the end. Exit status: 0 every step passed, 1 a step failed or ran out
# of time, 2 bad usage or a GPU that the chosen Python's torch cannot use.
#
# Without a GPU it prints one line, "no GPU: ...", and exits 0 (nothing to check).
# --plan prints the commands and dry-runs both training configs; it needs no GPU.
#
# Python: $TERRA_LAB_PYTHON, else the Bazel-built venv (~/.cache/terra-lab/python/active), else
# python3. That venv has the CPU torch of third_party/python/requirements.lock, so on a GPU
# machine run inside the cuda image (clusters.yaml `image_flavor: cuda`; TERRA_LAB_PYTHON=python3)
# or make a venv of the CUDA lock first:
#   python3.11 -m venv /tmp/cuda-venv
#   /tmp/cuda-venv/bin/pip install --require-hashes -r launcher/image/requirements-cuda.lock
#   TERRA_LAB_PYTHON=/tmp/cuda-venv/bin/python tools/bench/gpu_check.sh
set -uo pipefail

usage="usage: gpu_check.sh [--out DIR] [--plan]"
out=""
plan=0
while (($#)); do
  case "$1" in
    --out) [[ $# -ge 2 ]] || { echo "gpu_check: --out needs a folder; $usage" >&2; exit 2; }
      out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    --plan) plan=1; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
      exit 0 ;;
    *) echo "gpu_check: unknown argument '$1'; $usage" >&2; exit 2 ;;
  esac
done

# The checkout: where `bazel run` was typed, else the folder above tools/bench.
workspace="${BUILD_WORKSPACE_DIRECTORY:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
cd "$workspace" || exit 2
bazel_venv="${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/terra-lab/python/active/bin/python"
if [[ -n "${TERRA_LAB_PYTHON:-}" ]]; then
  python="$TERRA_LAB_PYTHON"
elif [[ -x "$bazel_venv" ]]; then
  python="$bazel_venv"
else
  python="python3"
fi
export PYTHONPATH="$workspace${PYTHONPATH:+:$PYTHONPATH}"

# The training runs take one microbatch per GPU and step, of the base recipe's size (512
# samples on 8 GPUs in microbatches of 32): the recipe's activation memory and kernel shapes
# per GPU, in steps short enough for 20 of them to fit the time limit.
MICROBATCH=32
STEPS=20

training_args() {  # parallelism global_batch -> the training command's arguments
  echo "base_gpu_check_$1 local --trainer.max_steps=$STEPS" \
    "--data_loader.global_batch_size=$2" \
    "--train_module.microbatch_size=$MICROBATCH --train_module.parallelism=$1" \
    "--data_loader.num_workers=4 --trainer.callbacks.evaluator.enabled=false" \
    "--trainer.callbacks.wandb.enabled=false"
}

if ((plan)); then
  echo "gpu_check plan (python: $python)"
  echo "a. TERRA_LAB_TEST_DEVICE=cuda $python -m tools.bench.parallel_pytest --jobs CORES/2" \
    "models/"
  echo "b. TERRA_LAB_TEST_DEVICE=cuda $python -m pytest -q -rPs" \
    "models/latent_mim/parity_bf16_test.py"
  for parallelism in ddp fsdp; do
    echo "c. $python -m torch.distributed.run --standalone --nproc_per_node GPUS" \
      "experiments/base.py train $(training_args "$parallelism" "$MICROBATCH*GPUS")"
  done
  echo "d. $python -m tools.bench.train_step --device cuda --dtype bf16 --no-reference" \
    "--size base_shallow_decoder --patch 4,8"
  for parallelism in ddp fsdp; do
    # shellcheck disable=SC2046  # the arguments are words without spaces
    if ! "$python" experiments/base.py dry_run $(training_args "$parallelism" "$MICROBATCH") \
      >/dev/null; then
      echo "gpu_check: the $parallelism training config does not resolve (dry_run above)" >&2
      exit 1
    fi
    echo "dry_run of the $parallelism training config: ok"
  done
  exit 0
fi

probe="$("$python" - 2>&1 <<'EOF'
import torch

if torch.cuda.is_available():
    print("cuda", torch.cuda.device_count(), torch.cuda.get_device_name(0))
else:
    print("none", torch.__version__)
EOF
)"
if [[ $? -ne 0 ]]; then
  echo "gpu_check: $python cannot import torch (${probe##*$'\n'}); set TERRA_LAB_PYTHON" >&2
  exit 2
fi
read -r kind count device_name <<<"$probe"
if [[ "$kind" != "cuda" ]]; then
  torch_version="$count"
  seen=""
  if command -v nvidia-smi >/dev/null; then
    seen="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
  fi
  if [[ -n "$seen" && "$seen" -gt 0 ]]; then
    echo "gpu_check: nvidia-smi lists $seen GPU(s) but torch $torch_version in $python has no" \
      "CUDA; set TERRA_LAB_PYTHON to a Python with launcher/image/requirements-cuda.lock" \
      "installed (see the top of tools/bench/gpu_check.sh)" >&2
    exit 2
  fi
  echo "no GPU: torch $torch_version in $python sees no CUDA device; nothing to check here"
  exit 0
fi

out="${out:-$workspace/runs/gpu_check/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out" || exit 2
echo "gpu_check: $count x $device_name, python $python, results in $out" >&2

failures=0
rows=()
run_step() {  # name limit_s command... : runs it with its log in $out/<name>.log
  local name="$1" limit="$2"
  shift 2
  local start=$SECONDS status
  echo "gpu_check: $name (at most ${limit}s) ..." >&2
  timeout --kill-after=15 "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  case $rc in
    0) status="passed" ;;
    124 | 137) status="timed out after ${limit}s"; failures=$((failures + 1)) ;;
    *) status="failed (exit $rc)"; failures=$((failures + 1)) ;;
  esac
  if [[ $rc -eq 0 && ( $name == model_tests || $name == parity_bf16 ) ]] &&
    ! grep -qE '[0-9]+ passed' "$out/$name.log"; then
    # On a GPU machine the CUDA tests must run: all skipped means they did not.
    status="ran no test"
    failures=$((failures + 1))
  fi
  local measured
  measured="$(detail "$name" | paste -sd ';' - | sed 's/;/; /g')"
  if [[ -z "$measured" && $status != passed ]]; then  # its last words: the error
    measured="$(grep -v '^\s*$' "$out/$name.log" | tail -1 | cut -c1-200 | tr '|' '/')"
  fi
  rows+=("| $name | $status | $((SECONDS - start)) | $measured |")
}

detail() {  # name -> one cell of what the step measured
  local log="$out/$1.log"
  case "$1" in
    model_tests | parity_bf16) "$python" -m tools.bench.gpu_check_summary pytest "$log" ;;&
    parity_bf16) grep -oE '(bf16 vs fp32 on .*|SKIPPED .*)' "$log" | tail -1 ;;
    train_ddp | train_fsdp) "$python" -m tools.bench.gpu_check_summary training "$out/runs" \
      "base_gpu_check_${1#train_}" ;;
    train_step) grep -o 'MFU against .*' "$log" | head -1 ;;
  esac
}

run_step dataset 90 "$python" -c \
  "from models.data import synthetic; print(synthetic.ensure_default_dataset())"
# One pytest per package, half as many at once as there are cores (each takes 2 threads).
jobs=$(($(nproc) / 2))
jobs=$((jobs < 1 ? 1 : jobs > 8 ? 8 : jobs))
run_step model_tests 180 env TERRA_LAB_TEST_DEVICE=cuda "$python" -m tools.bench.parallel_pytest \
  --jobs "$jobs" models/
run_step parity_bf16 45 env TERRA_LAB_TEST_DEVICE=cuda "$python" -m pytest -q -rPs \
  -p no:cacheprovider models/latent_mim/parity_bf16_test.py
for parallelism in ddp fsdp; do
  # shellcheck disable=SC2046  # the arguments are words without spaces
  run_step "train_$parallelism" 90 env TERRA_RUN_ROOT="$out/runs" WANDB_MODE=disabled \
    "$python" -m torch.distributed.run --standalone --nproc_per_node "$count" \
    experiments/base.py train $(training_args "$parallelism" "$((MICROBATCH * count))")
done
run_step train_step 75 "$python" -m tools.bench.train_step --device cuda --dtype bf16 \
  --no-reference --size base_shallow_decoder --patch 4,8 --repeats 5

{
  echo "# GPU check: $count x $device_name"
  echo
  commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $commit, python $python"
  echo
  echo "| step | result | seconds | measured |"
  echo "|------|--------|---------|----------|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "## train_step (bf16, base_shallow_decoder, ours only)"
  echo
  grep -E '^\|' "$out/train_step.log" | tail -4
} >"$out/summary.md"
cat "$out/summary.md"
echo
echo "gpu_check: logs and summary.md in $out; $failures step(s) failed"
((failures == 0))
