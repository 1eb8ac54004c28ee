"""Entry point of every `py_test`: runs pytest on the test's files, the Bazel way.

Bazel runs a test with the runfiles tree as working directory and passes the paths of the
test's sources as arguments (tools/build_rules/python.bzl). JUnit XML goes where Bazel asks
($XML_OUTPUT_FILE), `--test_filter` becomes `-k`, and pytest writes no cache into the tree.
"""

import os
import sys

import pytest


def main() -> int:
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
