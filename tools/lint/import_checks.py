"""Runs the two import checks of tools/lint on a source tree: layer contracts and the lock.

- `check_layers(root)`: import-linter with tools/lint/importlinter.ini (the layer contracts
  and the `acyclic` contract of acyclic_contract.py) over the packages under `root`.
- `check_dependencies(root)`: deptry with tools/lint/deptry.toml: every third-party import is
  a direct requirement of third_party/python/requirements.in and every requirement is imported.

Both run in a child Python with `root` as working directory and only path entry of ours, so
the tree checked is exactly `root` (the tests point them at copies with a planted violation)
and never modules this process imported already.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = ("models", "experiments", "launcher", "tools")
LAYER_CONTRACTS = "tools/lint/importlinter.ini"
DEPENDENCY_CONFIG = "tools/lint/deptry.toml"
REQUIREMENTS = "third_party/python/requirements.in"

_LINT_IMPORTS = (
    "import sys\n"
    "from importlinter.cli import lint_imports_command\n"
    "sys.exit(lint_imports_command())\n"
)


def _run(root: Path, command: list[str]) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=str(root), NO_COLOR="1", COLUMNS="200")
    return subprocess.run(
        command, cwd=root, env=environment, capture_output=True, text=True, timeout=300
    )


def check_layers(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on `root` (exit 0: every contract kept); its report is in stdout."""
    return _run(
        root,
        [sys.executable, "-c", _LINT_IMPORTS, "--no-cache", "--no-logo", LAYER_CONTRACTS],
    )


def stale_exceptions(layers_report: str) -> list[str]:
    """The `ignore_imports` lines of importlinter.ini that match no import any more."""
    return re.findall(r"No matches for ignored import (\S+ -> \S+?)\.?$", layers_report, re.M)


def check_dependencies(root: Path) -> subprocess.CompletedProcess:
    """deptry on the packages under `root` (exit 0: no issue); it reports on stderr."""
    packages = [package for package in PACKAGES if (root / package).is_dir()]
    return _run(
        root,
        [sys.executable, "-m", "deptry", "--config", DEPENDENCY_CONFIG, "--no-ansi", *packages],
    )


def python_package_dirs(root: Path) -> set[str]:
    """Folders under the four packages holding Python files, relative to `root`."""
    return {
        str(path.parent.relative_to(root))
        for package in PACKAGES
        for path in (root / package).rglob("*.py")
    }


def copy_sources(source: Path, destination: Path) -> None:
    """Copies the checks' inputs (Python files, the two configs, the requirements) as files.

    Bazel's runfiles are symlinks; the copies are plain files that a test may edit.
    """
    files = [
        path
        for package in PACKAGES
        for path in (source / package).rglob("*")
        if path.is_file() and path.suffix in (".py", ".ini", ".toml")
    ]
    files += [source / REQUIREMENTS]
    for path in files:
        target = destination / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
