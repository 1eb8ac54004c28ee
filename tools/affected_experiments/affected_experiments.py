"""Which experiments a change affects, and which tests to run for it.

    bazel run //tools:affected_experiments -- --base origin/main [--head HEAD] [--format json]

The change is `git diff --name-status -M <base>...<head>`: from the merge base, so commits
that landed on the base branch since the branch point do not count. change_rules.py says what
each changed path affects (a source file: the targets that contain it and everything that
depends on them; BUILD/.bzl: the packages that load it; WORKSPACE, .bazelrc, the pip locks,
the Python toolchain, tools/bazel, third_party/bazel/**: everything; docs: nothing), and
bazel_query.py turns that into one `bazel query` over //... in $BUILD_WORKSPACE_DIRECTORY.

Experiments are the py_binary targets under //experiments whose tags include "experiment"
(the experiment() macro of experiments/experiment.bzl tags them). While none is tagged, every
py_binary there counts as one, and a warning says so.

The build graph is read from the checked-out tree, so --head defaults to HEAD and uncommitted
edits draw a warning (or join the comparison with --include-uncommitted). A --head that is not
checked out is queried in a temporary git worktree with a one-off Bazel server: correct, but
it loads every external repository again: tens of seconds instead of about one.
tools/ci_affected.sh runs the affected tests for a pull request.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types

from absl import flags

from launcher.cli import command
from launcher.workspace import workspace_root
from tools.affected_experiments import git_changes
from tools.affected_experiments.bazel_query import (
    WORKSPACE_LABEL,
    BazelQuery,
    QueryError,
    affected_expression,
    all_binaries_expression,
    everything_expression,
    tagged_experiments_expression,
)
from tools.affected_experiments.change_rules import (
    Effect,
    PackageLookup,
    Rule,
    plan_change,
    read_bazelignore,
)
from tools.affected_experiments.git_changes import FileChange, GitError


class UsageError(ValueError):
    """The arguments cannot work together; the message says which and why."""


@dataclasses.dataclass
class Report:
    """The answer for one change.

    Attributes:
        base, head: the revisions as given.
        merge_base, head_commit: the commits compared.
        effects: what each changed path affects (change_rules.Effect), in diff order.
        everything: the change affects every target (then `tests` is every non-manual test).
        everything_because: the paths that made it everything.
        experiments: affected experiment labels, sorted.
        tests: labels of the tests to run, sorted; tests tagged manual are left out, as
            `bazel test //...` leaves them out.
        experiments_rule: how experiments were recognised.
        warnings: things the reader should know (uncommitted edits, no tagged experiments).
        query_calls, query_seconds: `bazel query` invocations and their wall time.
    """

    base: str
    head: str
    merge_base: str
    head_commit: str
    effects: list[Effect]
    everything: bool
    everything_because: list[str]
    experiments: list[str]
    tests: list[str]
    experiments_rule: str
    warnings: list[str]
    query_calls: int
    query_seconds: float

    def to_json(self) -> dict:
        changes = []
        for effect in self.effects:
            entry = {"status": effect.status, "path": effect.path, "affects": effect.rule.value}
            if effect.label:
                entry["label"] = effect.label
            if effect.build_path:
                entry["build_file"] = effect.build_path
            changes.append(entry)
        return {
            "base": self.base,
            "head": self.head,
            "merge_base": self.merge_base,
            "head_commit": self.head_commit,
            "everything": self.everything,
            "everything_because": self.everything_because,
            "experiments": self.experiments,
            "tests": self.tests,
            "experiments_rule": self.experiments_rule,
            "changes": changes,
            "warnings": self.warnings,
            "query": {"calls": self.query_calls, "seconds": round(self.query_seconds, 3)},
        }


def default_bazel(workspace: str) -> str:
    """The workspace's own entry point (tools/bazel) when it has one, else `bazel`."""
    entry = os.path.join(workspace, "tools", "bazel")
    if os.access(entry, os.X_OK):
        return entry
    return shutil.which("bazel") or "bazel"


def find_experiments(
    query: BazelQuery, workspace: str, package: str
) -> tuple[list[str], str, list[str]]:
    """The experiment labels of the workspace, how they were found, and warnings."""
    root = os.path.join(workspace, package)
    has_build_file = any(
        name in git_changes.BUILD_FILE_NAMES for _, _, names in os.walk(root) for name in names
    )
    if not has_build_file:
        return [], f"no //{package} package", []
    tagged = [label for _, label in query.query(tagged_experiments_expression(package))]
    if tagged:
        return sorted(tagged), f'py_binary targets under //{package}/... tagged "experiment"', []
    binaries = sorted(label for _, label in query.query(all_binaries_expression(package)))
    rule = f'every py_binary under //{package}/... (none is tagged "experiment")'
    return binaries, rule, [f"experiments are {rule}"] if binaries else []


@dataclasses.dataclass
class _Answer:
    """The part of a Report that depends on the tree queried (see Report)."""

    effects: list[Effect]
    everything_because: list[str]
    experiments: list[str]
    tests: list[str]
    experiments_rule: str
    warnings: list[str]


def _answer(
    repo: str,
    tree: str,
    changes: list[FileChange],
    merge_base: str,
    query: BazelQuery,
    experiments_package: str,
) -> _Answer:
    """Maps `changes` to targets in `tree`, a checkout of head."""
    head = PackageLookup.on_disk(tree)
    # .bazelignore is read at head for both sides: a change to it affects everything anyway.
    base = PackageLookup.from_dirs(
        git_changes.package_dirs_at(repo, merge_base), read_bazelignore(tree)
    )
    plan = plan_change(changes, head, base, lambda path: os.path.lexists(os.path.join(tree, path)))
    if plan.affects_nothing:
        # Docs-only changes need no Bazel at all.
        return _Answer(plan.effects, [], [], [], "not looked up: nothing is affected", [])
    experiments, experiments_rule, warnings = find_experiments(query, tree, experiments_package)
    everything_because = list(plan.everything_because)
    if everything_because:
        pairs = query.query(everything_expression(experiments))
    else:
        pairs = query.query(affected_expression(plan, experiments))
        if any(label == WORKSPACE_LABEL for _, label in pairs):
            # The seeds already held every package; name the .bzl files behind it.
            everything_because = [e.path for e in plan.effects if e.rule == Rule.BZL]
    in_repo = [(kind, label) for kind, label in pairs if label.startswith("//")]
    experiment_set = set(experiments)
    affected_experiments = sorted({label for _, label in in_repo if label in experiment_set})
    tests = sorted({label for kind, label in in_repo if kind.endswith("_test rule")})
    return _Answer(
        plan.effects, everything_because, affected_experiments, tests, experiments_rule, warnings
    )


def compute(
    workspace: str,
    base: str,
    head: str | None = None,
    *,
    bazel: str | None = None,
    startup_options: tuple[str, ...] = (),
    include_uncommitted: bool = False,
    experiments_package: str = "experiments",
) -> Report:
    """Computes the Report of `base...head` in the git checkout `workspace`.

    Args:
        workspace: the Bazel workspace and git checkout (BUILD_WORKSPACE_DIRECTORY).
        base: the revision the change is compared with (its merge base with head).
        head: the revision of the change; None means the checked-out HEAD.
        bazel: the Bazel executable; None means default_bazel(the tree queried).
        startup_options: Bazel startup options for every query (e.g. --output_user_root).
        include_uncommitted: compare the working tree (tracked edits and untracked files)
            instead of HEAD; needs head to be the checked-out commit.
        experiments_package: the package whose py_binary targets are experiments.
    """
    head_rev = head or "HEAD"
    base_commit = git_changes.resolve_commit(workspace, base)
    head_commit = git_changes.resolve_commit(workspace, head_rev)
    checked_out = git_changes.resolve_commit(workspace, "HEAD")
    merge_base = git_changes.merge_base(workspace, base_commit, head_commit)
    warnings = []

    def bazel_for(tree: str, extra: tuple[str, ...] = ()) -> BazelQuery:
        return BazelQuery(tree, [bazel or default_bazel(tree), *startup_options, *extra])

    if head_commit == checked_out:
        dirty = git_changes.uncommitted_paths(workspace)
        if include_uncommitted:
            changes = git_changes.working_tree_changes(workspace, merge_base)
            if dirty:
                warnings.append(f"comparing the working tree: {len(dirty)} uncommitted path(s)")
        else:
            changes = git_changes.committed_changes(workspace, merge_base, head_commit)
            if dirty:
                shown = ", ".join(dirty[:10]) + (", ..." if len(dirty) > 10 else "")
                warnings.append(
                    f"{len(dirty)} uncommitted path(s) are not compared ({shown}); the build "
                    "graph is read from the working tree, so edits to BUILD files among them "
                    "still change the answer. Commit them or pass --include-uncommitted."
                )
        query = bazel_for(workspace)
        answer = _answer(workspace, workspace, changes, merge_base, query, experiments_package)
    else:
        if include_uncommitted:
            raise UsageError("--include-uncommitted compares the working tree: omit --head")
        warnings.append(
            f"{head_rev} is not checked out: querying a temporary worktree of it with a "
            "one-off Bazel server, which reloads every external repository (slow)"
        )
        changes = git_changes.committed_changes(workspace, merge_base, head_commit)
        with (
            git_changes.temporary_worktree(workspace, head_commit) as tree,
            tempfile.TemporaryDirectory(
                prefix="affected_output_base_", ignore_cleanup_errors=True
            ) as output_base,
        ):
            # --batch leaves no server behind; the output base goes with the directory.
            query = bazel_for(tree, ("--batch", f"--output_base={output_base}"))
            answer = _answer(workspace, tree, changes, merge_base, query, experiments_package)
    return Report(
        base=base,
        head=head_rev,
        merge_base=merge_base,
        head_commit=head_commit,
        effects=answer.effects,
        everything=bool(answer.everything_because),
        everything_because=answer.everything_because,
        experiments=answer.experiments,
        tests=answer.tests,
        experiments_rule=answer.experiments_rule,
        warnings=warnings + answer.warnings,
        query_calls=query.calls,
        query_seconds=query.seconds,
    )


def format_text(report: Report) -> str:
    """The human-readable report: changes with their effect, experiments, tests."""
    lines = [
        f"Changes {report.base}...{report.head} (merge base {report.merge_base[:10]}, "
        f"head {report.head_commit[:10]}): {len(report.effects)} path(s)"
    ]
    width = max((len(effect.path) for effect in report.effects), default=0)
    lines += [
        f"  {effect.status}  {effect.path.ljust(width)}  {effect.rule.value}"
        for effect in report.effects
    ]
    if report.everything:
        lines.append(f"Everything is affected, because of: {', '.join(report.everything_because)}")
    lines.append(f"Affected experiments ({len(report.experiments)}):")
    lines += [f"  {label}" for label in report.experiments]
    lines.append(f"Tests to run ({len(report.tests)}):")
    lines += [f"  {label}" for label in report.tests]
    lines.append(f"bazel query: {report.query_calls} call(s), {report.query_seconds:.2f} s")
    return "\n".join(lines)


FLAGS = flags.FlagValues()
flags.DEFINE_string("base", None, "revision to compare with (merge base)", flag_values=FLAGS)
flags.DEFINE_string(
    "head", None, "revision of the change (default: the checked-out HEAD)", flag_values=FLAGS
)
flags.DEFINE_enum("format", "text", ["text", "json"], "report format", flag_values=FLAGS)
flags.DEFINE_boolean(
    "include-uncommitted",
    False,
    "compare the working tree, uncommitted edits and untracked files included",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "workspace",
    None,
    "the workspace (default: $BUILD_WORKSPACE_DIRECTORY, set by `bazel run`, else the git "
    "checkout of the current directory)",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "bazel", None, "Bazel executable (default: <workspace>/tools/bazel)", flag_values=FLAGS
)
flags.DEFINE_multi_string(
    "startup-option",
    [],
    "a Bazel startup option for every query, e.g. --startup-option=--output_user_root=DIR "
    "(repeatable)",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "experiments-package",
    "experiments",
    "the package whose py_binary targets are experiments",
    flag_values=FLAGS,
)


def run(args: types.SimpleNamespace) -> int:
    workspace = args.workspace or str(workspace_root())
    report = compute(
        workspace,
        args.base,
        args.head,
        bazel=args.bazel,
        startup_options=tuple(args.startup_option),
        include_uncommitted=args.include_uncommitted,
        experiments_package=args.experiments_package,
    )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_text(report))
    return 0


# A wrong revision or flag combination is bad input (2); a failing git, Bazel query or
# file system is a failed operation (1), its message already naming what failed.
COMMAND = command.Command(
    "affected_experiments",
    FLAGS,
    run,
    required=("base",),
    bad_input=(GitError, UsageError),
    failures=(QueryError, subprocess.SubprocessError, OSError),
)
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()
