#!/usr/bin/env bash
# bazel run //third_party/python:requirements_update
# Resolves requirements.in to a fully pinned, hash-checked requirements.lock with pip-tools.
# It names no index or find-links in the lock: the machine's pip configuration decides where
# packages come from.
set -euo pipefail
workspace="${BUILD_WORKSPACE_DIRECTORY:?run me with bazel run}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/terra-lab/pip-tools"
if [[ ! -x "$cache/bin/pip-compile" ]]; then
  echo "requirements_update: installing pip-tools into $cache" >&2
  python3.11 -m venv "$cache"
  "$cache/bin/pip" install -q "pip-tools==7.6.2"
fi
cd "$workspace/third_party/python"
"$cache/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links \
  --output-file requirements.lock requirements.in "$@"
echo "requirements_update: wrote third_party/python/requirements.lock" >&2
