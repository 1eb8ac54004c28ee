"""Every experiment file in experiments/ has its experiment() target in experiments/BUILD, so
it has a binary, a config test and launch tests (which the gate reads from the build graph)."""

from __future__ import annotations

import ast
from pathlib import Path

# resolve(): under Bazel this file is a runfiles symlink; the *.py files are read from the
# source tree it points into (only BUILD is declared data).
EXPERIMENTS = Path(__file__).resolve().parent
NOT_EXPERIMENTS = ("__init__", "script")


def _experiment_names(build: Path) -> set[str]:
    return {
        keyword.value.value
        for node in ast.walk(ast.parse(build.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "experiment"
        for keyword in node.keywords
        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant)
    }


def test_every_experiment_file_has_an_experiment_target() -> None:
    files = {
        path.stem
        for path in EXPERIMENTS.glob("*.py")
        if path.stem not in NOT_EXPERIMENTS and not path.stem.endswith("_test")
    }
    declared = _experiment_names(EXPERIMENTS / "BUILD")
    assert files - declared == set(), "add an experiment() target to experiments/BUILD"
    assert declared - files == set(), "remove the experiment() target of a deleted file"
