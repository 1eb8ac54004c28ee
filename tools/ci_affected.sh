#!/usr/bin/env bash
# Pull-request CI entry point: test what the pull request affects, not the whole repository.
#
#   tools/ci_affected.sh [BASE]      BASE defaults to origin/main
#
# Compares the merge base of BASE and HEAD with HEAD (//tools:affected_experiments), then runs
# `./tools/bazel test` on the affected tests plus the affected experiment binaries (so that
# they still build), and prints a summary. A change to WORKSPACE, .bazelrc, a pip lock or the
# toolchain affects everything and runs //..., as .ci/run does on main. If the affected set
# cannot be computed (BASE missing, a shallow clone without the merge base, a broken BUILD
# file), it says why and runs //... too: a failing selector never skips tests.
#
# The pipeline must have BASE locally (`git fetch origin main`, with enough history for the
# merge base). Exit status: Bazel's, or 0 when nothing is affected.
set -uo pipefail
cd "$(dirname "$0")/.."

base="${1:-origin/main}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

scope="everything"
if ./tools/bazel run --noshow_progress //tools:affected_experiments -- \
  --base "$base" --format json >"$work/report.json" 2>"$work/selector.log"; then
  grep -E "^warning:" "$work/selector.log" >&2
  # Writes the target list to $work/patterns and prints the scope: everything, tests (some
  # tests, maybe experiments), build (experiments but no tests) or nothing.
  scope="$(
    python3 - "$work/report.json" "$work/patterns" <<'EOF'
import json
import sys

report = json.load(open(sys.argv[1], encoding="utf-8"))
experiments, tests = report["experiments"], report["tests"]
with open(sys.argv[2], "w", encoding="utf-8") as patterns:
    patterns.writelines(f"{label}\n" for label in tests + experiments)
log = sys.stderr
print(f"ci_affected: {len(experiments)} experiment(s), {len(tests)} test(s) affected", file=log)
for label in experiments:
    print(f"  {label}", file=log)
if report["everything"]:
    print(f"ci_affected: everything, because of {report['everything_because']}", file=log)
    print("everything")
else:
    print("tests" if tests else "build" if experiments else "nothing")
EOF
  )" || scope="everything"
else
  cat "$work/selector.log" >&2
  echo "ci_affected: could not compute the affected tests (see above); testing everything" >&2
fi

log="$work/bazel.log"
case "$scope" in
  nothing)
    echo "ci_affected (base ${base}): nothing to test"
    exit 0
    ;;
  everything) ./tools/bazel test //... 2>&1 | tee "$log" ;;
  # `bazel test` exits 4 when no test target is given; the experiments only need to build.
  build) ./tools/bazel build --target_pattern_file="$work/patterns" 2>&1 | tee "$log" ;;
  *) ./tools/bazel test --target_pattern_file="$work/patterns" 2>&1 | tee "$log" ;;
esac
status=${PIPESTATUS[0]}

# .ci/run's closing line, with the scope in front.
summary=$(grep -E "^Executed [0-9]+ out of [0-9]+ tests?" "$log" | tail -1)
passed=$(grep -oE "[0-9]+ tests? pass" <<<"$summary" | grep -oE "^[0-9]+")
failed=$(grep -oE "[0-9]+ fails? locally" <<<"$summary" | grep -oE "^[0-9]+")
echo "ci_affected (${scope}, base ${base}): bazel: ${passed:-0} passed, ${failed:-0} failed"
exit "$status"
