#!/usr/bin/env bash
# bazel run //launcher/image:update_cuda_lock
# Regenerates launcher/image/requirements-cuda.lock: third_party/python/requirements.in with
# PyPI's CUDA build of torch instead of the CPU one, resolved against PyPI alone (the
# machine's pip configuration may point at local CPU wheels, which must not leak in).
# Run it whenever third_party/python/requirements.lock changes; the CUDA flavor of the
# image (clusters.yaml `image_flavor: cuda`, push_image --flavor cuda) installs this lock.
set -euo pipefail
workspace="${BUILD_WORKSPACE_DIRECTORY:?run me with bazel run}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/terra-lab/pip-tools"
if [[ ! -x "$cache/bin/pip-compile" ]]; then
  echo "update_cuda_lock: installing pip-tools into $cache" >&2
  python3.11 -m venv "$cache"
  "$cache/bin/pip" install -q "pip-tools==7.6.2"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The same direct requirements, with the torch pin's local version (+cpu) dropped.
sed -E 's/^(torch==[0-9.]+)\+cpu/\1/' "$workspace/third_party/python/requirements.in" \
  > "$work/requirements-cuda.in"
# The CPU lock's versions as constraints, so both flavors pin the same versions of
# everything they share (torch's own CUDA dependencies are added on top).
grep -E '^[A-Za-z0-9][A-Za-z0-9._-]*==' "$workspace/third_party/python/requirements.lock" \
  | sed -E 's/ .*//; /^torch==/d' > "$work/constraints.txt"
cd "$work"
env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT -u PIP_INDEX_URL \
  PIP_CONFIG_FILE=/dev/null \
  "$cache/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links --index-url https://pypi.org/simple \
  --constraint constraints.txt \
  --output-file requirements-cuda.lock requirements-cuda.in "$@"
sed -i 's|pip-compile .*requirements-cuda.in|bazel run //launcher/image:update_cuda_lock|' \
  requirements-cuda.lock
cp requirements-cuda.lock "$workspace/launcher/image/requirements-cuda.lock"
echo "update_cuda_lock: wrote launcher/image/requirements-cuda.lock" >&2
