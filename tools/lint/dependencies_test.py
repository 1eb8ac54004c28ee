"""requirements.in against the repository's imports (deptry with tools/lint/deptry.toml).

The planted tests run the same configuration on a copy of the sources with one problem added
and check that deptry names it, with its file and line.
"""

from pathlib import Path

import pytest

from tools.lint import import_checks

ROOT = Path.cwd()  # Bazel: the runfiles tree; by hand: the workspace root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    import_checks.copy_sources(ROOT, tmp_path)
    return tmp_path


def test_every_import_is_locked_and_every_requirement_imported() -> None:
    result = import_checks.check_dependencies(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No dependency issues found" in result.stderr


def test_a_requirement_nobody_imports_fails(tree: Path) -> None:
    requirements = tree / import_checks.REQUIREMENTS
    requirements.write_text(requirements.read_text() + "requests\n")
    result = import_checks.check_dependencies(tree)
    assert result.returncode == 1
    assert "DEP002 'requests' defined as a dependency but not used" in result.stderr


def test_an_import_of_an_unlocked_package_fails(tree: Path) -> None:
    (tree / "models/nn/planted.py").write_text("import some_unlocked_package\n")
    result = import_checks.check_dependencies(tree)
    assert result.returncode == 1
    assert (
        "models/nn/planted.py:1:8: DEP001 'some_unlocked_package' imported but missing"
        in result.stderr
    )


def test_an_import_of_a_package_locked_only_as_a_dependency_fails(tree: Path) -> None:
    # requests is in the lock only because wandb needs it.
    (tree / "launcher/planted.py").write_text("\nimport requests\n")
    result = import_checks.check_dependencies(tree)
    assert result.returncode == 1
    assert "launcher/planted.py:2:8: DEP003 'requests' imported but it is a transitive" in (
        result.stderr
    )
