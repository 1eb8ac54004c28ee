"""End to end: real git and a real nested Bazel on a throwaway copy of our layout (mini_repo).

Each scenario is a commit of the kind a pull request makes; the check is target-determinator's
three-part contract, for experiments and for tests separately: every required target is
reported, no forbidden target is reported, and nothing extra is reported.
"""

import dataclasses
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tools.affected_experiments import affected_experiments
from tools.affected_experiments.mini_repo import EXPERIMENTS, NEVER, TESTS, MiniRepo

BASE = "//experiments:base"
ENCODER_ONLY = "//experiments:encoder_only"
PREDICTOR_HEADS = "//experiments:predictor_heads"
LIST_EXPERIMENTS = "//experiments:list_experiments"
EXPERIMENTS_TEST = "//experiments:experiments_test"
ENCODER_TEST = "//models/encoder:encoder_test"
PREDICTOR_TEST = "//models/predictor:predictor_test"


def _debian_repos_bzl() -> str:
    # Bazel runs tests in runfiles/<workspace>, pytest from the checkout: both are the root.
    for root in (os.getcwd(), os.path.join(os.path.dirname(__file__), "..", "..")):
        path = os.path.join(root, "third_party", "bazel", "debian_repos.bzl")
        if os.path.isfile(path):
            return path
    raise FileNotFoundError("third_party/bazel/debian_repos.bzl is not in the runfiles")


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One commit and what it must affect (required); everything else known is forbidden."""

    name: str
    change: Callable[[MiniRepo], None]
    experiments: frozenset[str]
    tests: frozenset[str]
    everything: bool = False


def _git_rm(*paths: str) -> Callable[[MiniRepo], None]:
    return lambda repo: repo.git("rm", "-r", "--quiet", *paths)


def _git_mv(old: str, new: str) -> Callable[[MiniRepo], None]:
    return lambda repo: repo.git("mv", old, new)


def _edit(*paths: str) -> Callable[[MiniRepo], None]:
    def change(repo: MiniRepo) -> None:
        for path in paths:
            repo.append(path, "# edited\n")

    return change


SCENARIOS = [
    Scenario(
        "one variant file",
        _edit("experiments/encoder_only.py"),
        frozenset({ENCODER_ONLY}),
        frozenset({EXPERIMENTS_TEST}),
    ),
    Scenario(
        "shared encoder module",
        _edit("models/encoder/attention.py"),
        frozenset({BASE, ENCODER_ONLY}),
        frozenset({ENCODER_TEST, EXPERIMENTS_TEST}),
    ),
    Scenario(
        "docs only",
        _edit("README.md", "docs/notes.md", "models/README.md", "models/encoder/NOTES.md"),
        frozenset(),
        frozenset(),
    ),
    Scenario(
        "the pip lock",
        _edit("third_party/python/requirements.lock"),
        EXPERIMENTS,
        TESTS,
        everything=True,
    ),
    Scenario(
        "a BUILD file",
        _edit("models/predictor/BUILD"),
        frozenset({BASE, PREDICTOR_HEADS}),
        frozenset({PREDICTOR_TEST, EXPERIMENTS_TEST}),
    ),
    Scenario(
        "a .bzl that experiment.bzl loads",
        _edit("tools/build_rules/tags.bzl"),
        EXPERIMENTS,
        frozenset({EXPERIMENTS_TEST}),
    ),
    Scenario(
        "a .bzl that WORKSPACE loads",
        _edit("tools/build_rules/repositories.bzl"),
        EXPERIMENTS,
        TESTS,
        everything=True,
    ),
    Scenario(
        "a deleted file",
        _git_rm("experiments/configs/old_heads.yaml"),
        frozenset({PREDICTOR_HEADS}),
        frozenset({EXPERIMENTS_TEST}),
    ),
    Scenario("a deleted package", _git_rm("tools/scratch"), frozenset(), frozenset()),
    Scenario(
        "a rename out of the build",
        _git_mv("experiments/configs/predictor_heads.yaml", "docs/predictor_heads.yaml"),
        frozenset({PREDICTOR_HEADS}),
        frozenset({EXPERIMENTS_TEST}),
    ),
    Scenario(
        "a rename into the build",
        _git_mv("docs/draft.yaml", "experiments/configs/draft.yaml"),
        frozenset({PREDICTOR_HEADS}),
        frozenset({EXPERIMENTS_TEST}),
    ),
]


def assert_contract(what: str, reported: list[str], required: frozenset[str]) -> None:
    """target-determinator's three checks, each with its own message."""
    known = EXPERIMENTS | TESTS | NEVER
    forbidden = known - required
    problems = []
    if missing := required - set(reported):
        problems.append(f"required {what} not reported: {sorted(missing)}")
    if found := forbidden & set(reported):
        problems.append(f"forbidden {what} reported: {sorted(found)}")
    if extra := set(reported) - required - forbidden:
        problems.append(f"extra {what} reported: {sorted(extra)}")
    if len(reported) != len(set(reported)):
        problems.append(f"{what} reported twice: {reported}")
    assert not problems, "\n".join(problems)


@dataclasses.dataclass
class Setup:
    repo: MiniRepo
    commits: dict[str, str]
    bazel: str
    startup_options: tuple[str, ...]

    def compute(self, base: str, **kwargs) -> affected_experiments.Report:
        return affected_experiments.compute(
            self.repo.path,
            base,
            bazel=self.bazel,
            startup_options=self.startup_options,
            **kwargs,
        )

    def checkout(self, revision: str) -> None:
        self.repo.git("checkout", "--quiet", "--detach", revision)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    bazel = shutil.which("bazel-4") or shutil.which("bazel")
    if bazel is None:
        pytest.fail("no Bazel on PATH (bazel-4 from Debian's bazel-bootstrap, or bazel)")
    # Inside `bazel test` the nested Bazel needs its own writable root (and a HOME).
    scratch = os.environ.get("TEST_TMPDIR") or str(tmp_path_factory.mktemp("bazel"))
    os.environ.setdefault("HOME", scratch)
    startup_options = (
        f"--output_user_root={os.path.join(scratch, 'bazel_root')}",
        "--nohome_rc",
        # A server left behind by a killed test goes away on its own.
        "--max_idle_secs=120",
    )
    repo = MiniRepo(str(tmp_path_factory.mktemp("mini") / "repo"), _debian_repos_bzl())
    commits = {}
    for scenario in SCENARIOS:
        scenario.change(repo)
        commits[scenario.name] = repo.commit(scenario.name)
    # A feature branch, and a base branch that moved on after the branch point.
    repo.git("branch", "feature")
    repo.append("third_party/python/requirements.lock", "pyyaml==6.0 --hash=sha256:00\n")
    commits["main moved on"] = repo.commit("lock update on main")
    repo.git("checkout", "--quiet", "feature")
    repo.append("experiments/encoder_only.py", "# feature\n")
    commits["feature"] = repo.commit("feature work")
    # No tagged experiment: every py_binary of //experiments counts.
    repo.git("checkout", "--quiet", "-b", "untagged", commits[SCENARIOS[-1].name])
    repo.write({"tools/build_rules/tags.bzl": "EXPERIMENT_TAGS = []\n"})
    repo.commit("untag")
    repo.append("experiments/list_experiments.py", "# edited\n")
    commits["untagged"] = repo.commit("edit an untagged binary")
    yield Setup(repo, commits, bazel, startup_options)
    subprocess.run(
        [bazel, *startup_options, "shutdown"], cwd=repo.path, capture_output=True, timeout=120
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_reports_exactly_what_the_commit_affects(setup: Setup, scenario: Scenario) -> None:
    setup.checkout(setup.commits[scenario.name])
    report = setup.compute("HEAD~1")
    assert_contract("experiments", report.experiments, scenario.experiments)
    assert_contract("tests", report.tests, scenario.tests)
    assert report.everything == scenario.everything
    assert report.warnings == []


def test_commits_on_the_base_branch_after_the_branch_point_do_not_count(setup: Setup) -> None:
    # main's later lock update would affect everything if the diff were two-dot.
    setup.checkout("feature")
    report = setup.compute("main")
    assert_contract("experiments", report.experiments, frozenset({ENCODER_ONLY}))
    assert_contract("tests", report.tests, frozenset({EXPERIMENTS_TEST}))
    assert not report.everything


def test_a_head_that_is_not_checked_out_is_queried_in_a_worktree(setup: Setup) -> None:
    setup.checkout("main")
    encoder_change = setup.commits["shared encoder module"]
    report = setup.compute(f"{encoder_change}~1", head=encoder_change)
    assert_contract("experiments", report.experiments, frozenset({BASE, ENCODER_ONLY}))
    assert_contract("tests", report.tests, frozenset({ENCODER_TEST, EXPERIMENTS_TEST}))
    assert any("not checked out" in warning for warning in report.warnings)
    assert len(setup.repo.git("worktree", "list").splitlines()) == 1  # the temporary one is gone


def test_uncommitted_changes_are_flagged_and_compared_only_on_request(setup: Setup) -> None:
    setup.checkout("feature")
    setup.repo.append("experiments/base.py", "# uncommitted\n")
    setup.repo.write({"experiments/configs/untracked.yaml": "heads: 8\n"})
    try:
        flagged = setup.compute("HEAD")
        included = setup.compute("HEAD", include_uncommitted=True)
    finally:
        setup.repo.git("checkout", "--quiet", "--", "experiments/base.py")
        os.remove(os.path.join(setup.repo.path, "experiments/configs/untracked.yaml"))
    assert (flagged.experiments, flagged.tests) == ([], [])
    [warning] = flagged.warnings
    assert "experiments/base.py" in warning and "untracked.yaml" in warning
    assert_contract("experiments", included.experiments, frozenset({BASE, PREDICTOR_HEADS}))
    assert_contract("tests", included.tests, frozenset({EXPERIMENTS_TEST}))


def test_every_binary_counts_as_an_experiment_while_none_is_tagged(setup: Setup) -> None:
    setup.checkout(setup.commits["untagged"])
    report = setup.compute("HEAD~1")
    assert_contract("experiments", report.experiments, frozenset({LIST_EXPERIMENTS}))
    assert_contract("tests", report.tests, frozenset())
    [warning] = report.warnings
    assert 'none is tagged "experiment"' in warning


def test_the_command_line_prints_json_with_the_answer_and_each_files_rule(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    setup.checkout(setup.commits["a rename out of the build"])
    arguments = ["--base", "HEAD~1", "--format", "json", "--workspace", setup.repo.path]
    arguments += ["--bazel", setup.bazel]
    arguments += [f"--startup-option={option}" for option in setup.startup_options]
    assert affected_experiments.main(arguments) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["experiments"] == [PREDICTOR_HEADS]
    assert report["tests"] == [EXPERIMENTS_TEST]
    old_side, new_side = report["changes"]
    assert old_side["path"] == "experiments/configs/predictor_heads.yaml"
    assert old_side["affects"] == "the package that owned it at base, and its dependents"
    assert old_side["build_file"] == "experiments/configs/BUILD"
    assert new_side["path"] == "docs/predictor_heads.yaml"
    assert new_side["affects"] == "nothing: not in any Bazel package"


def test_an_unknown_base_is_a_usage_error(setup: Setup, capsys: pytest.CaptureFixture) -> None:
    arguments = ["--base", "no-such-branch", "--workspace", setup.repo.path]
    assert affected_experiments.main(arguments) == 2
    assert "no-such-branch" in capsys.readouterr().err
