"""Bazel runs tests (and binaries) on the active venv by its real path, not through the link.

The Python toolchain's interpreter is make_venv.py's `active-python`, which resolves
`~/.cache/terra-lab/python/active` when the process starts; a process started through the
link itself would follow it when another clone re-points it (make_venv_test shows both).
"""

import os
import sys

import pytest


@pytest.mark.skipif("TEST_SRCDIR" not in os.environ, reason="checks the Bazel toolchain")
def test_this_test_runs_on_the_resolved_venv():
    assert os.path.realpath(sys.prefix) == sys.prefix
    assert os.path.basename(sys.prefix).startswith("venv-")
    assert sys.executable == os.path.join(sys.prefix, "bin", "python")
    site_packages = [path for path in sys.path if path.endswith("site-packages")]
    assert site_packages and all(path.startswith(sys.prefix + os.sep) for path in site_packages)
