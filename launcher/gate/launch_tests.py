"""The launch tests of an experiment, exactly as the launch gate computes and runs them.

    ./tools/bazel run //launcher/gate:launch_tests -- //experiments:nano     # list, then test
    ./tools/bazel run //launcher/gate:launch_tests -- --list base_s2_only    # list only

An experiment is given by its label or, for one in //experiments, by its name. The list is
read from the build graph (launcher/gate/gate.py, `launch_tests_query`): the tests of every
package the experiment depends on, its own config test and its package's lint. Exit 0 when
they pass (or were listed), 1 when a test fails, 2 for an experiment Bazel cannot list.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

from absl import flags

from launcher.cli import command
from launcher.gate import gate
from launcher.workspace import workspace_root

NAME = "launch_tests"

FLAGS = flags.FlagValues()
flags.DEFINE_boolean("list", False, "print the launch tests; run nothing", flag_values=FLAGS)
flags.DEFINE_string(
    "workspace",
    None,
    "the checkout (default: the one `bazel run` was called in, else the current directory)",
    flag_values=FLAGS,
)


class ExperimentNotListed(Exception):
    """Bazel cannot list the experiment's tests (a malformed or unknown label): bad input."""


def experiment_label(experiment: str) -> str:
    """`//package:name` as given, or `//experiments:<experiment>` for a bare name."""
    if experiment.startswith(("//", "@")):
        return gate.experiment_label("", label=experiment)
    return gate.experiment_label(experiment)


def run(args: types.SimpleNamespace) -> int:
    workspace = Path(args.workspace or workspace_root())
    bazel = gate.default_bazel(workspace)
    label = experiment_label(args.experiment)
    try:
        labels = gate.query_launch_tests(workspace, label, bazel)
    except gate.LaunchRefused as refused:
        raise ExperimentNotListed(refused.reasons[0]) from None
    print("\n".join(labels))
    if args.list:
        return 0
    print(f"{NAME}: bazel test of these {len(labels)} tests", file=sys.stderr, flush=True)
    # Bazel's own output goes straight to the terminal: this is the interactive path.
    tested = subprocess.run(
        [*bazel, "test", *labels], cwd=workspace, env=gate.bazel_environment(), check=False
    )
    return 0 if tested.returncode == 0 else 1


COMMAND = command.Command(
    NAME, FLAGS, run, positional=("experiment",), bad_input=(ExperimentNotListed,)
)
main = COMMAND.main


if __name__ == "__main__":
    COMMAND.run_app()
