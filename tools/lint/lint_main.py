"""lint_test: ruff (format and check) and buildifier over the files given as arguments.

Fails with the exact command that fixes the files: `ruff format <files>` and
`buildifier <files>`; the same tools run as local pre-commit hooks.
"""

import os
import subprocess
import sys

RUNFILES_ROOT = os.path.dirname(os.getcwd())  # Bazel runs tests in runfiles/<workspace>
RUFF = os.path.join(RUNFILES_ROOT, "pypi", "bin", "ruff")
BUILDIFIER = os.path.join(RUNFILES_ROOT, "buildifier", "buildifier")
STARLARK_NAMES = ("BUILD", "BUILD.bazel", "WORKSPACE")
# Bazel 4 has the Python and shell rules built in; the rules_python/rules_shell loads that
# buildifier 8 asks for cannot be fetched offline (see third_party/README.md).
BUILDIFIER_WARNINGS = "-warnings=-native-py,-native-sh-binary,-native-sh-test,-native-sh-library"


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True)


def main() -> int:
    files = sys.argv[1:]
    python_files = [f for f in files if f.endswith(".py")]
    starlark_files = [
        f for f in files if f.endswith(".bzl") or os.path.basename(f) in STARLARK_NAMES
    ]
    failures = []
    if python_files:
        ruff_common = ["--config", "pyproject.toml", "--no-cache"]
        result = run([RUFF, "format", "--check", "--diff", *ruff_common, *python_files])
        if result.returncode:
            failures.append(("ruff format", result, f"ruff format {' '.join(python_files)}"))
        result = run([RUFF, "check", *ruff_common, *python_files])
        if result.returncode:
            failures.append(("ruff check", result, f"ruff check --fix {' '.join(python_files)}"))
    if starlark_files:
        result = run(
            [BUILDIFIER, "-mode=check", "-lint=warn", BUILDIFIER_WARNINGS, *starlark_files]
        )
        if result.returncode:
            failures.append(
                (
                    "buildifier",
                    result,
                    f"bazel run //tools/lint:fix (buildifier -lint=fix {' '.join(starlark_files)})",
                )
            )
    for tool, result, fix in failures:
        print(f"=== {tool} found problems ===\n{result.stdout}{result.stderr}")
        print(f"Fix with: {fix}\n")
    if not failures:
        print(f"lint ok: {len(python_files)} Python and {len(starlark_files)} Starlark files")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
