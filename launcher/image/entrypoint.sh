#!/bin/sh
# terra-lab image entrypoint (installed as /usr/local/bin/terra-entrypoint by the base layer).
#
#   <image> EXPERIMENT RUN_NAME CLUSTER [--dotted.key=value ...]   train experiments/EXPERIMENT.py
#   <image> COMMAND [ARGS ...]                                      run a command (python, sh, ...)
#
# Training runs `python3 experiments/EXPERIMENT.py train RUN_NAME CLUSTER ...` from /app. With
# more than one process it runs torchrun instead; the backend says how many through
#   TERRA_LAB_NNODES          nodes in the job (default 1)
#   TERRA_LAB_NPROC_PER_NODE  processes on this node (default 1; one per GPU on GPU clusters)
#   TERRA_LAB_RDZV_ENDPOINT   host:port of the c10d rendezvous (multi-node only)
#   TERRA_LAB_RDZV_ID         a job-unique rendezvous id (multi-node only)
set -eu

if [ "$#" -eq 0 ]; then
  echo "usage: <image> EXPERIMENT RUN_NAME CLUSTER [--key=value ...]  |  <image> COMMAND [ARGS]" >&2
  exit 2
fi

cd /app
case "$1" in
  */* | -*) exec "$@" ;;
esac
if [ ! -f "experiments/$1.py" ]; then
  exec "$@"
fi

experiment="$1"
shift
nnodes="${TERRA_LAB_NNODES:-1}"
nproc="${TERRA_LAB_NPROC_PER_NODE:-1}"
if [ "$nnodes" -eq 1 ] && [ "$nproc" -eq 1 ]; then
  exec python3 "experiments/$experiment.py" train "$@"
fi
if [ "$nnodes" -eq 1 ]; then
  # One node: torchrun picks a free local port itself.
  exec python3 -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node "$nproc" \
    "experiments/$experiment.py" train "$@"
fi
exec python3 -m torch.distributed.run --nnodes "$nnodes" --nproc_per_node "$nproc" \
  --rdzv_backend c10d --rdzv_endpoint "${TERRA_LAB_RDZV_ENDPOINT:?multi-node needs TERRA_LAB_RDZV_ENDPOINT}" \
  --rdzv_id "${TERRA_LAB_RDZV_ID:?multi-node needs TERRA_LAB_RDZV_ID}" \
  "experiments/$experiment.py" train "$@"
