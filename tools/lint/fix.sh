#!/usr/bin/env bash
# bazel run //tools/lint:fix -- formats and auto-fixes every tracked Python and Starlark file
# with the same ruff and buildifier versions lint_test uses.
set -euo pipefail
runfiles="${RUNFILES_DIR:-$0.runfiles}"
ruff="$runfiles/pypi/bin/ruff"
buildifier="$runfiles/buildifier/buildifier"
cd "${BUILD_WORKSPACE_DIRECTORY:?run me with bazel run}"
mapfile -t python_files < <(git ls-files --cached --others --exclude-standard '*.py')
mapfile -t starlark_files < <(git ls-files --cached --others --exclude-standard \
  '*.bzl' '*BUILD' '*BUILD.bazel' 'WORKSPACE')
"$ruff" format --config pyproject.toml --no-cache "${python_files[@]}"
"$ruff" check --fix --config pyproject.toml --no-cache "${python_files[@]}" || true
"$buildifier" -lint=fix \
  -warnings=-native-py,-native-sh-binary,-native-sh-test,-native-sh-library "${starlark_files[@]}"
echo "lint fix: ${#python_files[@]} Python and ${#starlark_files[@]} Starlark files" >&2
