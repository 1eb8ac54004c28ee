"""The launch tests of a real experiment, computed by Bazel on a scratch copy of this tree.

launch_tests_real_test proves the query on a small workspace shaped like ours; this proves it
on ours: a test target added to a model package that nano depends on (models/nn) joins nano's
launch tests, and a new package nothing depends on stays out, with no list edited anywhere.
It runs the copy's own `tools/bazel` (the user's caches, like the end-to-end tests), so it is
manual with them: ./tools/bazel test //launcher/gate:launch_tests_tree_test
"""

from pathlib import Path

import pytest

from launcher import testing
from launcher.gate import gate

SOURCE = Path(__file__).resolve().parents[2]
NANO = "//experiments:nano"
SCRATCH_TEST = """

py_test(
    name = "scratch_added_test",
    srcs = ["scratch_added_test.py"],
)
"""
UNRELATED_BUILD = """load("//tools/build_rules:python.bzl", "py_test")

py_test(
    name = "unrelated_test",
    srcs = ["unrelated_test.py"],
)
"""


@pytest.fixture(scope="module")
def env():
    # The gate runs Bazel with this process's environment: the user's, as in a real launch.
    environment = testing.e2e_environment()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        yield environment


@pytest.fixture(scope="module")
def copies(env):
    """Two scratch copies of the working tree: as it is, and with the scratch targets."""
    nn_build = (SOURCE / "models" / "nn" / "BUILD").read_text()
    edits = {
        "models/nn/BUILD": nn_build + SCRATCH_TEST,
        "models/nn/scratch_added_test.py": "def test_added():\n    pass\n",
        "models/scratch_unrelated/__init__.py": "",
        "models/scratch_unrelated/BUILD": UNRELATED_BUILD,
        "models/scratch_unrelated/unrelated_test.py": "def test_unrelated():\n    pass\n",
    }
    root = testing.E2E_ROOT / "gate-tree"
    as_is = testing.scratch_workspace(SOURCE, root / "as_is")
    edited = testing.scratch_workspace(SOURCE, root / "edited", edits)
    yield as_is, edited
    for work in (as_is, edited):
        testing.shutdown_bazel(work, env)


def _launch_tests(work: Path) -> set[str]:
    return set(gate.query_launch_tests(work, NANO, gate.default_bazel(work)))


def test_a_test_added_to_a_model_package_joins_the_launch_tests_of_its_experiments(copies):
    as_is, edited = map(_launch_tests, copies)
    assert "//models/nn:attention_test" in as_is and "//experiments:nano_test" in as_is
    assert edited - as_is == {"//models/nn:scratch_added_test"}
    assert not any("scratch_unrelated" in label for label in edited)
