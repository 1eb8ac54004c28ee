#!/usr/bin/env bash
# bazel run //third_party/reference:requirements_update
# Pins the reference implementation's environment (parity tests and benchmarks only).
# olmoearth-pretrain is resolved apart from the rest and appended with its hash: its
# metadata pins torch<2.10, which would otherwise drag in a CUDA torch (requirements.in).
set -euo pipefail
workspace="${BUILD_WORKSPACE_DIRECTORY:?run me with bazel run}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/terra-lab/pip-tools"
if [[ ! -x "$cache/bin/pip-compile" ]]; then
  python3.11 -m venv "$cache"
  "$cache/bin/pip" install -q "pip-tools==7.6.2"
fi
cd "$workspace/third_party/reference"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pinned="$(grep -E '^olmoearth-pretrain==' requirements.in)"
grep -vE '^olmoearth-pretrain==' requirements.in >"$work/rest.in"
"$cache/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
  --no-emit-index-url --no-emit-find-links --output-file "$work/rest.lock" "$work/rest.in"
"$cache/bin/pip" download --quiet --no-deps -d "$work/wheel" "$pinned"
digest="$(sha256sum "$work"/wheel/*.whl | cut -d' ' -f1)"
{
  sed "s|$work/rest.in|requirements.in (all but olmoearth-pretrain)|" "$work/rest.lock"
  echo "$pinned \\"
  echo "    --hash=sha256:$digest"
  echo "    # via requirements.in, installed without its dependencies (no resolver involved)"
} >requirements.lock
echo "requirements_update: wrote third_party/reference/requirements.lock" >&2
