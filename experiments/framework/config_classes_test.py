"""Every `*Config` class of models/ and experiments/ is a Configurable: a keyword-only
dataclass with a real `build()` (models/config/configurable.py says why)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from models.config import serialization
from models.config.configurable import is_configurable_class

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "experiments")


def _config_classes() -> list[str]:
    """'module.Class' of every module-level class whose name ends in 'Config'."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name.endswith("_test.py") or "plans" in path.parts:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                    found.append(f"{module}.{node.name}")
    return found


CONFIG_CLASSES = _config_classes()


def test_the_scan_finds_the_config_classes() -> None:
    # A scan that finds nothing would pass every check below.
    assert "models.encoder.encoder.EncoderConfig" in CONFIG_CLASSES
    assert len(CONFIG_CLASSES) >= 30


@pytest.mark.parametrize("name", CONFIG_CLASSES)
def test_every_config_class_is_configurable(name: str) -> None:
    module, _, cls_name = name.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    assert is_configurable_class(cls), (
        f"{name} must be @dataclasses.dataclass(kw_only=True), derive from "
        "models.config.configurable.Configurable and define build(); a settings-only "
        "class is renamed (e.g. *Settings) instead"
    )


def test_every_class_alias_reaches_a_class_that_exists() -> None:
    # Old `_class_` names in run folders written before a class moved (serialization.py).
    for old, new in serialization.CLASS_ALIASES.items():
        assert serialization.import_class(old) is serialization.import_class(new), old


def test_a_moved_class_loads_under_its_old_name_from_an_old_run_folder() -> None:
    from models.data.masked_loader import MaskedDataLoaderConfig

    data = serialization.to_dict(MaskedDataLoaderConfig(global_batch_size=4))
    data["_class_"] = "experiments.framework.data.MaskedDataLoaderConfig"
    assert serialization.from_dict(data) == MaskedDataLoaderConfig(global_batch_size=4)
