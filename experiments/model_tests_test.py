"""The launch gate's test lists match the BUILD files: every test of a model package the
recipe uses, every framework test, and an experiment() target for every experiment file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent
ROOT = EXPERIMENTS.parent


def _assignments(path: Path) -> dict[str, object]:
    tree = ast.parse(path.read_text())
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }


def _calls(path: Path, *rules: str) -> list[dict[str, object]]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in rules:
            keywords = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
            keywords.setdefault("name", "lint")
            keywords["rule"] = node.func.id
            calls.append(keywords)
    return calls


def _declared_tests(package: str) -> list[str]:
    build = ROOT / package / "BUILD"
    if not build.is_file():
        pytest.skip(f"{build} is not readable here (a Bazel sandbox only holds declared data)")
    tests = _calls(build, "py_test", "lint_test", "sh_test")
    return [f"//{package}:{t['name']}" for t in tests if "reference" not in t.get("tags", [])]


def test_every_model_package_test_gates_a_launch() -> None:
    table = _assignments(EXPERIMENTS / "model_tests.bzl")["MODEL_PACKAGE_TESTS"]
    for package, listed in table.items():
        declared = _declared_tests(package.removeprefix("//"))
        missing = sorted(set(declared) - set(listed))
        stale = sorted(set(listed) - set(declared))
        assert not missing, f"add to experiments/model_tests.bzl: {missing}"
        assert not stale, f"remove from experiments/model_tests.bzl: {stale}"


def test_every_framework_test_gates_a_launch() -> None:
    listed = _assignments(EXPERIMENTS / "experiment.bzl")["FRAMEWORK_TESTS"]
    declared = _declared_tests("experiments/framework")
    assert sorted(listed) == sorted(declared)


def test_every_experiment_file_has_an_experiment_target() -> None:
    files = {
        path.stem
        for path in EXPERIMENTS.glob("*.py")
        if path.stem not in ("__init__", "script") and not path.stem.endswith("_test")
    }
    declared = {call["name"] for call in _calls(EXPERIMENTS / "BUILD", "experiment")}
    assert files == declared
