"""The `bazel query` side of tools/affected_experiments: expressions, and running them.

A whole change is answered by one query (plus one that lists the experiments): the changed
file labels go into a single `filter()` over their packages, and the changed BUILD and .bzl
files into a single `rbuildfiles()`, so the cost does not grow with the number of files.
Queries run in Sky Query mode (`--universe_scope=//...`), which `rbuildfiles` requires; on a
warm server each takes well under a second on this repository.
"""

import dataclasses
import os
import re
import subprocess
import tempfile
import time

from tools.affected_experiments.change_rules import Plan

UNIVERSE = "//..."
EXPERIMENT_TAG = "experiment"
# `rbuildfiles` of a .bzl that WORKSPACE loads includes this file: the change reaches every
# repository rule, hence everything.
WORKSPACE_LABEL = "//external:WORKSPACE"


class QueryError(RuntimeError):
    """`bazel query` failed; the message ends with the tail of Bazel's output."""


def _list_attribute_regex(value: str) -> str:
    # `attr()` matches a list attribute against its printed form "[a, b]", so one element is
    # delimited by "[" or " " before and "," or "]" after (Bazel's query documentation).
    return r"[\[ ]" + re.escape(value) + r"[,\]]"


def _non_manual_tests(expression: str) -> str:
    # Test rules themselves, not tests(): tests() expands a test_suite in the set to all of
    # its tests, and a launch-gate suite that holds one affected test would drag in dozens of
    # unaffected ones. Every affected test is in the set already. (Bazel requires test rule
    # kinds to end in "_test".) `bazel test //...` skips tests tagged manual; so does this.
    manual = _list_attribute_regex("manual")
    return f'let t = kind("_test rule$", {expression}) in $t except attr(tags, "{manual}", $t)'


def tagged_experiments_expression(package: str) -> str:
    """py_binary targets under `//package/...` whose tags include "experiment"."""
    tag = _list_attribute_regex(EXPERIMENT_TAG)
    return f'attr(tags, "{tag}", kind(py_binary, //{package}/...))'


def all_binaries_expression(package: str) -> str:
    """Every py_binary under `//package/...`: the experiments when none is tagged."""
    return f"kind(py_binary, //{package}/...)"


def seeds_expression(plan: Plan) -> str:
    """The targets a change touches directly: changed files and the packages that must reload.

    Changed files are picked out of their packages with one anchored regex, because naming a
    file Bazel does not know (a README next to the code) is an error, and filtering is not.
    """
    parts = []
    if plan.source_labels:
        labels = [
            label for package in sorted(plan.source_labels) for label in plan.source_labels[package]
        ]
        regex = "^(" + "|".join(re.escape(label) for label in labels) + ")$"
        packages = " + ".join(f"//{package}:*" for package in sorted(plan.source_labels))
        parts.append(f'filter("{regex}", {packages})')
    if plan.build_paths:
        paths = ", ".join(f'"{path}"' for path in plan.build_paths)
        parts.append(f"siblings(rbuildfiles({paths}))")
    if not parts:
        raise ValueError("seeds_expression needs a plan that affects something")
    return " + ".join(parts)


def affected_expression(plan: Plan, experiments: list[str]) -> str:
    """Tests and experiments that depend on what the change touches, in one expression.

    The result holds: the non-manual tests among the affected targets, the affected members
    of `experiments`, and WORKSPACE_LABEL when a changed .bzl is loaded by WORKSPACE.
    """
    lines = [
        f"let seeds = {seeds_expression(plan)} in",
        f"let affected = rdeps({UNIVERSE}, $seeds) in",
        f"({_non_manual_tests('$affected')})",
    ]
    if experiments:
        lines.append(f"+ ($affected ^ set({' '.join(experiments)}))")
    bzl_paths = [path for path in plan.build_paths if path.endswith(".bzl")]
    if bzl_paths:
        paths = ", ".join(f'"{path}"' for path in bzl_paths)
        lines.append(f'+ filter("^{re.escape(WORKSPACE_LABEL)}$", rbuildfiles({paths}))')
    return "\n".join(lines)


def everything_expression(experiments: list[str]) -> str:
    """Every non-manual test and every experiment."""
    expression = f"({_non_manual_tests(UNIVERSE)})"
    if experiments:
        expression += f" + set({' '.join(experiments)})"
    return expression


def parse_label_kind(output: str) -> list[tuple[str, str]]:
    """(kind, label) pairs from `--output=label_kind` lines such as `py_test rule //a:b`."""
    pairs = []
    for line in output.splitlines():
        kind, _, label = line.strip().rpartition(" ")
        if label:
            pairs.append((kind, label))
    return pairs


@dataclasses.dataclass
class BazelQuery:
    """Runs queries in one workspace with one Bazel command.

    Attributes:
        workspace: the directory Bazel runs in.
        command: the Bazel executable and its startup options, e.g. ["./tools/bazel"] or
            ["bazel", "--output_user_root=/tmp/x", "--batch"].
        seconds: wall time spent in `bazel query` so far.
        calls: how many queries ran.
    """

    workspace: str
    command: list[str]
    seconds: float = 0.0
    calls: int = 0

    def query(self, expression: str) -> list[tuple[str, str]]:
        """Evaluates `expression` over //... and returns (kind, label) pairs, unsorted."""
        with tempfile.NamedTemporaryFile("w", suffix=".query", delete=False) as query_file:
            query_file.write(expression)
        try:
            arguments = [
                *self.command,
                "query",
                f"--query_file={query_file.name}",
                f"--universe_scope={UNIVERSE}",
                "--order_output=no",
                "--output=label_kind",
                "--noshow_progress",
            ]
            start = time.monotonic()
            result = subprocess.run(
                arguments, cwd=self.workspace, capture_output=True, text=True, encoding="utf-8"
            )
            self.seconds += time.monotonic() - start
            self.calls += 1
        finally:
            os.unlink(query_file.name)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-15:])
            raise QueryError(
                f"`{' '.join(arguments)}` failed with exit code {result.returncode} in "
                f"{self.workspace}\nquery:\n{expression}\nBazel said:\n{tail}"
            )
        return parse_label_kind(result.stdout)
