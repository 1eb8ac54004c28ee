"""The launch tests computed by a real Bazel, on a throwaway workspace shaped like ours.

Native rules only (no @pypi, so a nested Bazel loads it in seconds), with the Debian
stand-ins our WORKSPACE uses for the rule repositories Bazel 4 would download:

    //experiments:encoder_only -> :common -> //models/encoder:encoder -> :attention
    //experiments:base         -> :common, //models/predictor:predictor
    //experiments              encoder_only_test, base_test, experiments_test (all three), lint
    //models/encoder           encoder_test, parity_test (tag reference), e2e_test (tag manual)
    //models/predictor         predictor_test
    //tools/scratch            scratch_test (nothing depends on this package)

So encoder_only's launch tests are models/encoder's (less manual and reference ones), its own
config test and the lint, never models/predictor's, tools/scratch's or its siblings' tests.
A test added to models/encoder, or a new package that models/encoder comes to depend on, must
change that set with no other edit. (tools/affected_experiments has a similar mini repository,
but the launcher may not import tools: tools/lint/importlinter.ini.)
"""

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher import testing
from launcher.gate import gate

ENCODER_ONLY = "//experiments:encoder_only"
GATED = frozenset(
    {"//models/encoder:encoder_test", "//experiments:encoder_only_test", "//experiments:lint"}
)


def _stand_in(name: str, *candidates: str) -> str:
    return (
        f'debian_bazel_repository(\n    name = "{name}",\n    candidates = {list(candidates)!r},\n'
        '    debian_package = "bazel-bootstrap-source",\n)\n'
    ).replace("'", '"')


def _py(kind: str, name: str, deps: tuple[str, ...] = (), tags: tuple[str, ...] = ()) -> str:
    """A native py_* rule whose source is <name>.py (the main of a binary or test)."""
    attributes = [f'name = "{name}"', f'srcs = ["{name}.py"]']
    attributes += [f"deps = {list(deps)!r}".replace("'", '"')] if deps else []
    attributes += [f"tags = {list(tags)!r}".replace("'", '"')] if tags else []
    return f"{kind}({', '.join(attributes)})\n"


PUBLIC = 'package(default_visibility = ["//visibility:public"])\n'
FILES = {
    "WORKSPACE": 'workspace(name = "gate_mini")\n\n'
    'load("//third_party/bazel:debian_repos.bzl", "debian_bazel_repository")\n\n'
    + _stand_in("rules_cc", "/usr/src/bazel-bootstrap/mock_repos/rules_cc")
    + _stand_in("rules_java", "/usr/src/bazel-bootstrap/mock_repos/rules_java")
    + _stand_in(
        "platforms",
        "/usr/share/bazel/tools/platforms",
        "/usr/src/bazel-bootstrap/mock_repos/platforms",
    )
    # Test rules name it implicitly; upstream it is downloaded. Never run: no coverage here.
    + 'local_repository(name = "remote_coverage_tools", path = "coverage_tools")\n',
    ".bazelignore": "coverage_tools\n",
    ".gitignore": "/bazel-*\n",
    "coverage_tools/WORKSPACE": 'workspace(name = "remote_coverage_tools")\n',
    "coverage_tools/BUILD": PUBLIC
    + 'sh_binary(name = "coverage_report_generator", srcs = ["fail.sh"])\n'
    + 'sh_binary(name = "lcov_merger", srcs = ["fail.sh"])\n',
    "coverage_tools/fail.sh": "exit 1\n",
    "third_party/bazel/BUILD": 'exports_files(["debian_repos.bzl"])\n',
    "models/encoder/BUILD": PUBLIC
    + _py("py_library", "attention")
    + _py("py_library", "encoder", deps=(":attention",))
    + _py("py_test", "encoder_test", deps=(":encoder",))
    + _py("py_test", "parity_test", deps=(":encoder",), tags=("reference",))
    + _py("py_test", "e2e_test", deps=(":encoder",), tags=("exclusive", "manual")),
    "models/predictor/BUILD": PUBLIC
    + _py("py_library", "predictor")
    + _py("py_test", "predictor_test", deps=(":predictor",)),
    "experiments/BUILD": _py("py_library", "common", deps=("//models/encoder",))
    + _py("py_binary", "encoder_only", deps=(":common",))
    + _py("py_binary", "base", deps=(":common", "//models/predictor"))
    + _py("py_test", "encoder_only_test", deps=(":encoder_only",))
    + _py("py_test", "base_test", deps=(":base",))
    + _py("py_test", "experiments_test", deps=(":base", ":encoder_only"))
    + _py("py_test", "lint"),
    "tools/scratch/BUILD": _py("py_test", "scratch_test"),
}
# Every module imports what its rule depends on, so a passing test proves the deps resolve.
SOURCES = {
    "models/encoder/attention.py": "HEADS = 2\n",
    "models/encoder/encoder.py": "from models.encoder.attention import HEADS\n",
    "models/encoder/encoder_test.py": "import models.encoder.encoder\n",
    "models/encoder/parity_test.py": "raise SystemExit('needs --config=reference')\n",
    "models/encoder/e2e_test.py": "raise SystemExit('run on purpose only')\n",
    "models/predictor/predictor.py": "DEPTH = 2\n",
    "models/predictor/predictor_test.py": "import models.predictor.predictor\n",
    "experiments/common.py": "import models.encoder.encoder\n",
    "experiments/encoder_only.py": "import experiments.common\n",
    "experiments/base.py": "import experiments.common\nimport models.predictor.predictor\n",
    "experiments/encoder_only_test.py": "import experiments.encoder_only\n",
    "experiments/base_test.py": "import experiments.base\n",
    "experiments/experiments_test.py": "import experiments.base\nimport experiments.encoder_only\n",
    "experiments/lint.py": "print('lint')\n",
    "tools/scratch/scratch_test.py": "raise SystemExit('not a dependency of any experiment')\n",
}


def _debian_repos_bzl() -> Path:
    # Bazel runs tests in runfiles/<workspace>, pytest from the checkout: both are the root.
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        path = root / "third_party" / "bazel" / "debian_repos.bzl"
        if path.is_file():
            return path
    raise FileNotFoundError("third_party/bazel/debian_repos.bzl is not in the runfiles")


@dataclasses.dataclass
class Workspace:
    path: Path
    bazel: list[str]

    def launch_tests(self, label: str = ENCODER_ONLY) -> set[str]:
        return set(gate.query_launch_tests(self.path, label, self.bazel))

    def write(self, relative: str, text: str) -> None:
        (self.path / relative).parent.mkdir(parents=True, exist_ok=True)
        (self.path / relative).write_text(text)

    def append(self, relative: str, text: str) -> None:
        self.write(relative, (self.path / relative).read_text() + text)


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    bazel = shutil.which("bazel-4") or shutil.which("bazel")
    if bazel is None:
        pytest.fail("no Bazel on PATH (bazel-4 from Debian's bazel-bootstrap, or bazel)")
    # Inside `bazel test` the nested Bazel needs its own writable root (and a HOME).
    scratch = os.environ.get("TEST_TMPDIR") or str(tmp_path_factory.mktemp("bazel"))
    os.environ.setdefault("HOME", scratch)
    command = [
        bazel,
        f"--output_user_root={os.path.join(scratch, 'bazel_root')}",
        "--nohome_rc",
        # A server left behind by a killed test goes away on its own.
        "--max_idle_secs=120",
    ]
    debian_repos = {"third_party/bazel/debian_repos.bzl": _debian_repos_bzl().read_text()}
    path = testing.make_repo(
        tmp_path_factory.mktemp("gate") / "repo", {**FILES, **SOURCES, **debian_repos}
    )
    yield Workspace(path, command)
    subprocess.run([*command, "shutdown"], cwd=path, capture_output=True, timeout=120)


@pytest.fixture
def workspace(module_workspace: Workspace) -> Iterator[Workspace]:
    """The module's workspace, put back to its commit after the test's edits."""
    yield module_workspace
    testing.git(module_workspace.path, "checkout", "--quiet", "--", ".")
    testing.git(module_workspace.path, "clean", "--quiet", "-fd")


def test_an_experiment_is_gated_by_the_tests_of_what_it_depends_on_and_no_others(
    workspace: Workspace,
) -> None:
    assert workspace.launch_tests() == GATED
    # base also depends on models/predictor; its own config test is base_test.
    assert workspace.launch_tests("//experiments:base") == {
        "//models/encoder:encoder_test",
        "//models/predictor:predictor_test",
        "//experiments:base_test",
        "//experiments:lint",
    }


def test_a_new_test_in_a_package_the_experiment_depends_on_is_gated_without_a_list(
    workspace: Workspace,
) -> None:
    for package in ("models/encoder", "models/predictor"):
        workspace.write(f"{package}/heads_test.py", "print('new')\n")
        workspace.append(f"{package}/BUILD", _py("py_test", "heads_test"))
    # encoder_only does not depend on models/predictor: its new test stays out.
    assert workspace.launch_tests() == GATED | {"//models/encoder:heads_test"}


def test_a_new_package_the_experiment_comes_to_depend_on_brings_its_tests(
    workspace: Workspace,
) -> None:
    workspace.write("models/norm/BUILD", PUBLIC + _py("py_library", "norm"))
    workspace.append("models/norm/BUILD", _py("py_test", "norm_test", deps=(":norm",)))
    workspace.write("models/norm/norm.py", "EPS = 1e-6\n")
    workspace.write("models/norm/norm_test.py", "import models.norm.norm\n")
    assert workspace.launch_tests() == GATED  # not a dependency yet
    build = workspace.path / "models" / "encoder" / "BUILD"
    build.write_text(build.read_text().replace('[":attention"]', '[":attention", "//models/norm"]'))
    assert workspace.launch_tests() == GATED | {"//models/norm:norm_test"}


def test_the_gate_runs_them_and_a_failing_one_refuses_the_launch_naming_it(
    workspace: Workspace,
) -> None:
    assert set(gate.run_launch_tests(workspace.path, ENCODER_ONLY, workspace.bazel)) == GATED
    workspace.write("models/encoder/encoder_test.py", "raise SystemExit('broken')\n")
    with pytest.raises(gate.LaunchRefused) as refused:
        gate.run_launch_tests(workspace.path, ENCODER_ONLY, workspace.bazel)
    (reason,) = refused.value.reasons
    assert reason.startswith(f"the launch tests of {ENCODER_ONLY} failed")
    assert "//models/encoder:encoder_test" in reason and "FAILED" in reason


def test_an_unknown_experiment_is_refused_with_bazels_reason(workspace: Workspace) -> None:
    with pytest.raises(gate.LaunchRefused, match="no such target '//experiments:nano'"):
        workspace.launch_tests("//experiments:nano")
