"""Entry point of every `py_test`: runs pytest on the test's files, the Bazel way.

Bazel runs a test with the runfiles tree as working directory and passes the paths of the
test's sources as arguments (tools/build_rules/python.bzl). JUnit XML goes where Bazel asks
($XML_OUTPUT_FILE), `--test_filter` becomes `-k`, and pytest writes no cache into the tree.
"""

import email.parser
import glob
import importlib.metadata
import os
import sys

import pytest


def check_python_env() -> str | None:
    """The test's @pypi packages must be the versions installed in the interpreter's venv.

    Each @pypi target brings its METADATA file into the runfiles (that is how Bazel knows a
    bump changed the test's inputs). The venv itself is shared by the clones on a machine
    and switched by tools/bazel; if another clone switched it to a different lock, say so
    instead of testing against the wrong packages.
    """
    runfiles_root = os.path.dirname(os.getcwd())
    for path in glob.glob(os.path.join(runfiles_root, "pypi", "meta", "*.METADATA")):
        with open(path, encoding="utf-8", errors="replace") as metadata:
            headers = email.parser.HeaderParser().parse(metadata)
        name, wanted = headers["Name"], headers["Version"]
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != wanted:
            return (
                f"{name}: this checkout's lock pins {wanted}, but the active Python environment "
                f"has {installed}. Another checkout switched ~/.cache/terra-lab/python/active; "
                "run the test through ./tools/bazel (it selects this checkout's environment)."
            )
    return None


def main() -> int:
    if problem := check_python_env():
        print(f"terra-lab: {problem}", file=sys.stderr)
        return 1
    args = ["-p", "no:cacheprovider", "-q", "-ra", "--color=no", *sys.argv[1:]]
    if xml := os.environ.get("XML_OUTPUT_FILE"):
        args += ["--junitxml", xml]
    if test_filter := os.environ.get("TESTBRIDGE_TEST_ONLY"):
        args += ["-k", test_filter]
    if tmp := os.environ.get("TEST_TMPDIR"):
        args += ["--basetemp", os.path.join(tmp, "pytest")]
    return pytest.main(args)


if __name__ == "__main__":
    sys.exit(main())
