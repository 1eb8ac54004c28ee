"""Writes the resolved experiment config into the run folder as config.yaml.

Any config object works: one with `as_dict()` (the experiment framework's configs) or a
(nested) dataclass. Dataclasses are written field by field with a `_class_` entry naming
their class, so a variant's subclassed config is recognisable in the file.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from models.train.callbacks.callback import Callback

logger = logging.getLogger(__name__)


def config_to_dict(config: Any) -> Any:
    """Plain YAML-able data (dicts, lists, strings, numbers, None) for a config tree."""
    if hasattr(config, "as_dict") and callable(config.as_dict):
        return config_to_dict(config.as_dict())
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        cls = type(config)
        out: dict[str, Any] = {"_class_": f"{cls.__module__}.{cls.__qualname__}"}
        for field in dataclasses.fields(config):
            out[field.name] = config_to_dict(getattr(config, field.name))
        return out
    if isinstance(config, dict):
        return {str(key): config_to_dict(value) for key, value in config.items()}
    if isinstance(config, (list, tuple, set, frozenset)):
        items = sorted(config, key=repr) if isinstance(config, (set, frozenset)) else config
        return [config_to_dict(item) for item in items]
    if isinstance(config, enum.Enum):
        return config_to_dict(config.value)
    if isinstance(config, (Path, torch.dtype, torch.device)):
        return str(config)
    if config is None or isinstance(config, (bool, int, float, str)):
        return config
    return repr(config)


def write_yaml_atomically(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ConfigSaverCallback(Callback):
    """Rank 0 writes config.yaml at the start; a different earlier one is kept aside."""

    priority = 100

    def __init__(self, config: Any) -> None:
        self.config = config

    def pre_train(self) -> None:
        if not self.trainer.is_main:
            return
        path = self.trainer.run_dir.config_path
        data = config_to_dict(self.config)
        if path.exists():
            try:
                previous = yaml.safe_load(path.read_text(errors="replace"))
                readable = True
            except yaml.YAMLError:
                previous, readable = None, False
            if previous == data:
                return
            # A resumed run with a changed config (e.g. a longer max_duration): keep the
            # config the earlier steps were trained with next to the new one. A corrupt
            # one is kept too (for whoever investigates), never allowed to block a resume.
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(path.stat().st_mtime))
            kind = "before" if readable else "corrupt"
            kept = path.with_name(f"config.{kind}-{stamp}.yaml")
            os.replace(path, kept)
            if readable:
                logger.warning("config changed since the last start; the old one is in %s", kept)
            else:
                logger.warning("config.yaml was not valid YAML; moved it to %s", kept)
        write_yaml_atomically(path, data)
