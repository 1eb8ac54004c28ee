"""The launch gate: what must hold before an image is pushed or a job submitted.

A launched run must be reproducible from its commit alone, so the gate refuses when
  - a name is invalid: W&B project `YYYY_MM_DD_description` (a real date), run name of
    letters, digits, '.', '_', '-' that contains the experiment's name, a known cluster;
  - the working tree is dirty, untracked files included: the experiment's tests run on the
    working tree, so with local changes they would not vouch for the commit;
  - the commit is on no remote branch (`git branch -r --contains HEAD` is empty): nobody
    else could check it out ("push before launch");
  - a test the experiment depends on fails (Bazel's cache makes this instant when nothing
    changed since the last run). Which tests: read from the build graph, never from a list
    (`launch_tests_query`), so a new test in any package the experiment depends on, or a new
    package it comes to depend on, gates the next launch without anyone editing anything.
    `bazel run //launcher/gate:launch_tests -- //experiments:<name>` lists and runs the same set.
    A group of runs (a study's variants) is gated once: the union of its distinct experiments'
    launch tests in ONE `bazel test` (`check_group_tests_and_commit`).
The cheap checks run first and are reported together; the tests run only when they pass.
There is deliberately no flag to skip any of this.
"""

from __future__ import annotations

import collections
import datetime
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from models.names import names

# Tests a launch leaves out: `manual` ones (end-to-end tests that start services, run for
# minutes and are run on purpose, as `bazel test //...` skips them), `reference` parity
# tests, which need the pinned reference environment (`--config=reference`), and `services`
# tests, which start this machine's dev daemons (registry, Docker, Slurm; ~60 s, exclusive):
# they prove the dev infrastructure, which CI tests, not the experiment, and a launch from a
# machine that runs a real cluster's daemons must not start a second set.
EXCLUDED_TAGS = ("manual", "reference", "services")
# What `bazel query` may be handed: a workspace label such as //experiments:nano. Anything
# else (an external repository, a pattern, query syntax) is refused before Bazel sees it.
# (Bazel allows more characters in names, but "+" and "," mean something in a query; our
# packages and experiment names use none of them.)
_LABEL = re.compile(r"^//(?P<package>[\w.-]+(?:/[\w.-]+)*)?:(?P<name>[\w.-]+)$", re.ASCII)
HUMAN_COMMAND = "./tools/bazel run //launcher/gate:launch_tests --"


class LaunchRefused(RuntimeError):
    """The gate said no; the message lists every reason and how to fix it."""

    exit_code = 2

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        if len(self.reasons) == 1:  # one reason: one line
            super().__init__(f"launch refused (nothing was pushed or submitted): {reasons[0]}")
            return
        lines = "\n".join(f"  - {reason}" for reason in self.reasons)
        super().__init__(f"launch refused; nothing was pushed or submitted:\n{lines}")


def name_problems(experiment: str, run_name: str, wandb_project: str | None) -> list[str]:
    """The experiment's, the W&B project's (None: not checked here) and the run's name rules."""
    problems = []
    if problem := names.experiment_problem(experiment):
        problems.append(problem)
    if wandb_project is not None and (problem := names.project_problem(wandb_project)):
        example = f"{datetime.date.today():%Y_%m_%d}_{experiment or 'study'}"
        problems.append(f"{problem}, e.g. {example}")
    if problem := names.run_name_problem(run_name):
        problems.append(problem)
    elif experiment and experiment not in run_name:
        problems.append(
            f"run name {run_name!r} must contain the experiment name {experiment!r}, so the run "
            f"can be traced to its variant (e.g. {experiment}_{run_name})"
        )
    return problems


def _git(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["git", "-C", str(workspace), *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as error:  # no git at all: an answer, not a traceback
        stderr = f"git cannot run ({error.strerror}); install it: apt-get install git"
        return subprocess.CompletedProcess(command, 127, "", stderr)


def resolve_commit(workspace: Path) -> str:
    """The full sha of HEAD, resolved once: the gate, the image and the job all use it.

    Raises:
        LaunchRefused: no git, not a checkout, or a checkout without a commit.
    """
    result = _git(workspace, "rev-parse", "--verify", "HEAD^{commit}")
    if result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no HEAD"
        raise LaunchRefused(
            [
                f"{workspace} has no commit to launch ({reason}); launch from a git checkout "
                "of terra-lab with the experiment committed and pushed"
            ]
        )
    return result.stdout.strip()


def tree_problems(workspace: Path) -> list[str]:
    """Uncommitted changes or untracked files (ignored files do not count)."""
    result = _git(workspace, "status", "--porcelain=v1", "--untracked-files=normal")
    if result.returncode != 0:
        return [f"{workspace} is not a git checkout: {result.stderr.strip()}"]
    changed = [line[3:] for line in result.stdout.splitlines() if line.strip()]
    if not changed:
        return []
    shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
    return [
        f"the working tree is dirty ({len(changed)} changed or untracked: {shown}); commit or "
        "stash them (`git stash -u`) so the image and the tests match a commit"
    ]


def push_problems(workspace: Path, commit: str = "HEAD") -> list[str]:
    """The commit must be on a remote branch that others can fetch."""
    result = _git(workspace, "branch", "-r", "--contains", commit)
    if result.returncode != 0:
        return [f"could not ask git which remote branches contain HEAD: {result.stderr.strip()}"]
    if result.stdout.strip():
        return []
    short = _git(workspace, "rev-parse", "--short", commit).stdout.strip()
    branch = _git(workspace, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    if branch == "HEAD":  # detached: there is no branch to push
        return [
            f"commit {short} is on no remote branch and HEAD is detached; create a branch and "
            "push it (`git switch -c <user>/<description> && git push -u origin HEAD`)"
        ]
    return [
        f"commit {short} is on no remote branch; push it first (`git push -u origin {branch}`), "
        "so the run can be reproduced from a commit others can check out"
    ]


def default_bazel(workspace: Path) -> list[str]:
    """The workspace's own Bazel entry point, which the gate runs unless told otherwise."""
    return [str(workspace / "tools" / "bazel")]


def experiment_label(experiment: str, label: str = "") -> str:
    """The experiment's Bazel label: `label` when given, else `//experiments:<experiment>`."""
    return label.removeprefix("@") if label else f"//experiments:{experiment}"


def _tag_regex(tag: str) -> str:
    # `attr()` matches a list attribute against its printed form "[a, b]", so one element is
    # delimited by "[" or " " before and "," or "]" after ("manual" must not match "manualish").
    return r"[\[ ]" + re.escape(tag) + r"[,\]]"


def launch_tests_query(label: str) -> str:
    """The `bazel query` expression whose answer is the launch tests of experiment `label`.

    They are the test rules of every workspace package in `deps(label)` (external @repos
    have no tests of ours) except the experiment's own package, whose other tests vouch for
    sibling experiments: from it, only `<name>_test` (the experiment() macro's config test)
    and the package's `lint`. Tests tagged EXCLUDED_TAGS are left out. `siblings()` turns
    the dependencies into their packages inside one query, so one Bazel call answers it.

    Raises:
        ValueError: `label` is not a workspace label //package:name.
    """
    match = _LABEL.match(label)
    if not match:
        raise ValueError(
            f"{label!r} is not an experiment's Bazel label; give it as //package:name, "
            "e.g. //experiments:nano"
        )
    package, name = match["package"] or "", match["name"]
    excluded = " + ".join(f'attr(tags, "{_tag_regex(tag)}", $tests)' for tag in EXCLUDED_TAGS)
    return " ".join(
        [
            f'let packages = siblings(filter("^//", deps({label}))) except //{package}:* in',
            'let tests = kind("_test rule$", $packages) in',
            f"($tests except ({excluded}))",
            f"+ set(//{package}:{name}_test //{package}:lint)",
        ]
    )


def parse_query_labels(output: str) -> list[str]:
    """The labels in `bazel query --output=label` output, sorted, each once."""
    return sorted({line.strip() for line in output.splitlines() if line.strip().startswith("//")})


def query_launch_tests(workspace: Path, label: str, bazel: list[str] | None = None) -> list[str]:
    """The launch tests of experiment `label`, asked of Bazel in `workspace`.

    Raises:
        LaunchRefused: `label` is malformed, or Bazel could not answer (an unknown target,
            a broken BUILD file); the reason ends with Bazel's own error line.
    """
    try:
        expression = launch_tests_query(label)
    except ValueError as error:
        raise LaunchRefused([str(error)]) from None
    command = [
        *(bazel or default_bazel(workspace)),
        "query",
        "--output=label",
        "--order_output=no",
        "--noshow_progress",
        expression,
    ]
    try:
        result = subprocess.run(
            command,
            cwd=workspace,
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=bazel_environment(),
            check=False,
        )
    except OSError as error:  # no Bazel at all: an answer, not a traceback
        raise LaunchRefused(
            [f"cannot run {command[0]} ({error.strerror}); launch from a terra-lab checkout"]
        ) from None
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        said = (errors or result.stderr.strip().splitlines() or ["no output"])[-1]
        raise LaunchRefused(
            [
                f"cannot list the launch tests of {label}: `bazel query` failed "
                f"(exit {result.returncode}): {said.strip()}; fix the BUILD file it names, "
                "or launch an experiment() target"
            ]
        )
    return parse_query_labels(result.stdout)


def _packages(labels: list[str]) -> list[str]:
    return sorted({label.removeprefix("//").partition(":")[0] for label in labels})


def run_launch_tests(workspace: Path, target: str, bazel: list[str] | None = None) -> list[str]:
    """`bazel test` of the launch tests of experiment `target` (a label such as
    //experiments:nano) in `workspace`; returns the labels it ran.

    Raises:
        LaunchRefused: the tests cannot be listed, or they do not all pass.
    """
    return run_group_launch_tests(workspace, [target], bazel)


def run_group_launch_tests(
    workspace: Path, targets: Sequence[str], bazel: list[str] | None = None
) -> list[str]:
    """ONE `bazel test` of the union of the launch tests of the experiments `targets`
    (labels; repeats count once); returns the labels it ran, sorted.

    Each experiment's tests are asked of Bazel separately (one query each, as for a single
    launch), so the union is exactly what the experiments' own launches would test; one
    test command then lets Bazel share the build and run each test once.

    Raises:
        LaunchRefused: a label is malformed (all such are named, before Bazel runs), the
            tests cannot be listed, or they do not all pass.
    """
    targets = list(dict.fromkeys(targets))
    if not targets:
        raise ValueError("run_group_launch_tests needs at least one experiment label")
    malformed = []
    for target in targets:
        try:
            launch_tests_query(target)
        except ValueError as error:
            malformed.append(str(error))
    if malformed:
        raise LaunchRefused(malformed)
    labels = sorted(
        {label for target in targets for label in query_launch_tests(workspace, target, bazel)}
    )
    packages = _packages(labels)
    if len(targets) == 1:
        (target,) = targets
        what, listing, rerun = target, f"{HUMAN_COMMAND} --list {target}", target
    else:
        what = f"{len(targets)} experiments ({', '.join(targets)})"
        listing = f"{HUMAN_COMMAND} --list LABEL, for each"
        rerun = "LABEL for each: " + ", ".join(targets)
    print(
        f"[gate] bazel test: the {len(labels)} launch tests of {what}, from {len(packages)} "
        f"packages ({', '.join(packages)}); list them: {listing}",
        file=sys.stderr,
        flush=True,
    )
    command = [*(bazel or default_bazel(workspace)), "test", *labels]
    tail: collections.deque[str] = collections.deque(maxlen=30)
    process = subprocess.Popen(
        command,
        cwd=workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=bazel_environment(),
    )
    assert process.stdout is not None
    for line in process.stdout:
        tail.append(line.rstrip())
        print(f"[gate] {line.rstrip()}", file=sys.stderr, flush=True)
    code = process.wait()
    if code != 0:
        raise LaunchRefused(
            [
                f"the launch tests of {what} failed (`bazel test` exit {code}); the "
                f"experiment's tests must pass at this commit (rerun them: {HUMAN_COMMAND} "
                f"{rerun}). Last lines:\n      " + "\n      ".join(tail)
            ]
        )
    return labels


def bazel_environment() -> dict[str, str]:
    """The caller's environment without what `bazel run` sets for its own binary."""
    dropped = ("BUILD_WORKSPACE_DIRECTORY", "BUILD_WORKING_DIRECTORY", "RUNFILES_DIR")
    return {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("RUNFILES_", "PYTHON"))
    }


def static_problems(
    workspace: Path, experiment: str, run_name: str, wandb_project: str, commit: str = "HEAD"
) -> list[str]:
    """Every cheap check at once: names, a clean tree, a pushed commit."""
    return (
        name_problems(experiment, run_name, wandb_project)
        + tree_problems(workspace)
        + push_problems(workspace, commit)
    )


def moved_problems(workspace: Path, commit: str) -> list[str]:
    """HEAD must still be `commit`: the tests vouch for the tree they ran on, no other."""
    head = _git(workspace, "rev-parse", "--verify", "HEAD^{commit}").stdout.strip()
    if head == commit:
        return []
    return [
        f"HEAD moved from {commit[:12]} to {head[:12] or '(none)'} while the gate ran (a commit "
        f"or checkout meanwhile); the tests vouch for {commit[:12]} only. Launch again"
    ]


def check_tests_and_commit(
    workspace: Path,
    experiment: str,
    label: str,
    bazel: list[str] | None = None,
    commit: str | None = None,
) -> str:
    """Run the experiment's launch tests; returns the commit they vouch for.

    Args:
        commit: the sha resolved before the gate (`resolve_commit`); None resolves it now.
            When HEAD is not that commit after the tests, the launch is refused.
    """
    return check_group_tests_and_commit(
        workspace, [experiment_label(experiment, label)], bazel, commit
    )


def check_group_tests_and_commit(
    workspace: Path,
    labels: Sequence[str],
    bazel: list[str] | None = None,
    commit: str | None = None,
) -> str:
    """Run the union of the launch tests of the experiments `labels` in one `bazel test`
    (`run_group_launch_tests`); returns the commit they vouch for (see check_tests_and_commit).
    """
    commit = commit or resolve_commit(workspace)
    if problems := moved_problems(workspace, commit):
        raise LaunchRefused(problems)
    run_group_launch_tests(workspace, labels, bazel)
    # The tests ran on the working tree: make sure nothing changed meanwhile.
    if problems := moved_problems(workspace, commit) + tree_problems(workspace):
        raise LaunchRefused(problems)
    return commit
