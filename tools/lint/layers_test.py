"""The layer contracts of tools/lint/importlinter.ini: kept by the repository, broken by plants.

The planted tests run the same contract file on a copy of the repository's sources with one
violation added, and check that the report names the offending import and its line.
"""

import configparser
import os
from pathlib import Path

import pytest

from tools.lint import import_checks

# Bazel runs a test in its runfiles tree (the packages of :layers_test's data); pytest run by
# hand from the workspace root sees the workspace itself.
ROOT = Path.cwd()
LEAF_PACKAGES = {"models.names", "models.config"}
PUBLIC_LAUNCHER_MODULES = {"launcher.api", "launcher.settings"}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    import_checks.copy_sources(ROOT, tmp_path)
    return tmp_path


def plant(root: Path, relative_path: str, text: str) -> None:
    (root / relative_path).write_text(text)


def test_the_repository_keeps_every_layer_contract() -> None:
    result = import_checks.check_layers(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    stale = import_checks.stale_exceptions(result.stdout)
    assert not stale, (
        f"tools/lint/importlinter.ini: the temporary exceptions {stale} match no import any "
        "more (the violation was fixed): delete their ignore_imports lines"
    )


def test_masking_importing_the_encoder_breaks_the_model_layers(tree: Path) -> None:
    plant(
        tree, "models/masking/planted.py", '"""Planted."""\n\nfrom models.encoder import encoder\n'
    )
    result = import_checks.check_layers(tree)
    assert result.returncode == 1, result.stdout
    assert "layers inside models" in result.stdout
    assert "masking, losses and data never import the model" in result.stdout
    assert "models.masking.planted -> models.encoder.encoder (l.3)" in result.stdout


def test_models_importing_experiments_breaks_the_top_level_layers(tree: Path) -> None:
    plant(tree, "models/nn/planted.py", "import experiments.framework.naming\n")
    result = import_checks.check_layers(tree)
    assert result.returncode == 1, result.stdout
    assert "models is not allowed to import experiments" in result.stdout
    assert "models.nn.planted -> experiments.framework.naming (l.1)" in result.stdout


def test_launcher_importing_model_code_breaks_its_contract(tree: Path) -> None:
    plant(tree, "launcher/planted.py", "import models.names.names\nimport models.train.trainer\n")
    result = import_checks.check_layers(tree)
    assert result.returncode == 1, result.stdout
    assert "launcher is not allowed to import models.train" in result.stdout
    assert "launcher.planted -> models.train.trainer (l.2)" in result.stdout
    # The leaf package on line 1 is allowed.
    assert "models.names.names (l.1)" not in result.stdout


def test_a_leaf_package_importing_terra_lab_breaks_the_leaf_contract(tree: Path) -> None:
    plant(tree, "models/names/planted.py", "from models.config import configurable\n")
    result = import_checks.check_layers(tree)
    assert result.returncode == 1, result.stdout
    assert "models.names is not allowed to import models.config" in result.stdout
    assert "models.names.planted -> models.config.configurable (l.1)" in result.stdout


def test_an_import_cycle_is_printed_link_by_link(tree: Path) -> None:
    plant(tree, "launcher/planted_a.py", "\nfrom launcher import planted_b\n")
    plant(tree, "launcher/planted_b.py", "from launcher import planted_a\n")
    result = import_checks.check_layers(tree)
    assert result.returncode == 1, result.stdout
    assert "no import cycles between modules BROKEN" in result.stdout
    assert "launcher.planted_a -> launcher.planted_b (l. 2)" in result.stdout
    assert "launcher.planted_b -> launcher.planted_a (l. 1)" in result.stdout


def test_an_exception_that_matches_no_import_is_reported_stale(tree: Path) -> None:
    # A temporary exception whose import was removed must be deleted, not left to hide the
    # next violation of the same kind.
    contracts = configparser.ConfigParser()
    contracts.read(tree / import_checks.LAYER_CONTRACTS)
    contract = contracts["importlinter:contract:no-cycles"]
    contract["ignore_imports"] = contract.get("ignore_imports", "") + (
        "\nmodels.nn.planted -> models.nn.gone"
    )
    with open(tree / import_checks.LAYER_CONTRACTS, "w") as file:
        contracts.write(file)
    result = import_checks.check_layers(tree)
    assert "models.nn.planted -> models.nn.gone" in import_checks.stale_exceptions(result.stdout)


def test_launcher_contract_forbids_every_model_package_but_the_leaves() -> None:
    contracts = configparser.ConfigParser()
    contracts.read(ROOT / import_checks.LAYER_CONTRACTS)
    contract = contracts["importlinter:contract:launcher-runs-models-as-commands"]
    forbidden = set(contract["forbidden_modules"].split())
    model_packages = {
        f"models.{path.parent.name}" for path in (ROOT / "models").glob("*/__init__.py")
    }
    wanted = model_packages - LEAF_PACKAGES
    assert forbidden == wanted, (
        "tools/lint/importlinter.ini: the launcher's forbidden_modules must list every package "
        f"of models but the leaves {sorted(LEAF_PACKAGES)}; add {sorted(wanted - forbidden)}, "
        f"remove {sorted(forbidden - wanted)}"
    )


def test_experiments_reaching_past_the_launcher_api_break_its_contract(tree: Path) -> None:
    plant(
        tree,
        "experiments/framework/planted.py",
        "from launcher import api\nfrom launcher.gate import gate\n",
    )
    result = import_checks.check_layers(tree)
    assert result.returncode == 1, result.stdout
    assert "experiments is not allowed to import launcher.gate" in result.stdout
    assert "experiments.framework.planted -> launcher.gate.gate (l.2)" in result.stdout
    assert "launcher.api (l.1)" not in result.stdout


def test_experiments_contract_forbids_every_launcher_module_but_the_public_ones() -> None:
    contracts = configparser.ConfigParser()
    contracts.read(ROOT / import_checks.LAYER_CONTRACTS)
    contract = contracts["importlinter:contract:experiments-use-the-launcher-api"]
    forbidden = set(contract["forbidden_modules"].split())
    launcher = ROOT / "launcher"
    packages = {path.parent.name for path in launcher.glob("*/__init__.py")}
    modules = {
        path.stem
        for path in launcher.glob("*.py")
        if not path.stem.endswith("_test") and path.stem != "__init__"
    }
    wanted = {f"launcher.{name}" for name in packages | modules} - PUBLIC_LAUNCHER_MODULES
    assert forbidden == wanted, (
        "tools/lint/importlinter.ini: the experiments' forbidden_modules must list every module "
        f"and package of launcher but {sorted(PUBLIC_LAUNCHER_MODULES)}; add "
        f"{sorted(wanted - forbidden)}, remove {sorted(forbidden - wanted)}"
    )


def test_every_python_package_of_the_workspace_is_checked() -> None:
    # Under Bazel the check sees only the packages in :layers_test's data; the runfiles are
    # links into the workspace, so the workspace's own folders show what is missing there.
    workspace = Path(os.path.realpath(ROOT / import_checks.LAYER_CONTRACTS)).parents[2]
    assert (workspace / "WORKSPACE").is_file(), f"no workspace above {workspace}"
    missing = import_checks.python_package_dirs(workspace) - import_checks.python_package_dirs(ROOT)
    assert not missing, (
        f"{sorted(missing)} hold Python that the import checks do not see: add "
        f"{['//' + package for package in sorted(missing)]} to CHECKED_PACKAGES in "
        "tools/lint/BUILD"
    )
