"""The experiment framework: builders -> one config tree -> dry_run / train / launch / ...

Public API (names resolve lazily, so importing one submodule never imports the others):
    main, builders_in                        experiments.framework.cli
    CommonComponents, ExperimentConfig,      experiments.framework.experiment_config
    VisualizeSettings, Builders, build_config, as_subclass
Modules: resolution, overrides, naming, diff, hygiene, identity, clusters, subcommands,
training, evaluate, inspection, visualize, launching, testing.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "main": "cli",
    "builders_in": "cli",
    "Builders": "experiment_config",
    "CommonComponents": "experiment_config",
    "ExperimentConfig": "experiment_config",
    "VisualizeSettings": "experiment_config",
    "as_subclass": "experiment_config",
    "build_config": "experiment_config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name == f"{__name__}.{name}":
            raise AttributeError(f"module {__name__} has no attribute {name}") from None
        raise
