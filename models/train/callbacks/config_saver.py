"""Writes the run's config (`trainer.run_config`) into the run folder as config.yaml.

It runs in the RECORD phase of `pre_train`. The config tree of (nested) dataclasses is
written by models/config/serialization.py with a `_class_` entry naming each class, so a
variant's subclassed config is recognisable in the file and `serialization.load` rebuilds it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import yaml

from models.config import serialization
from models.config.configurable import Configurable
from models.train.callbacks.callback import Callback, Phase

logger = logging.getLogger(__name__)


@dataclasses.dataclass(kw_only=True)
class ConfigSaverConfig(Configurable["ConfigSaverCallback"]):
    """Attributes:
    enabled: False: the trainer does not build it (no config.yaml is written).
    """

    enabled: bool = True

    def build(self) -> ConfigSaverCallback:
        return ConfigSaverCallback()


class ConfigSaverCallback(Callback):
    """Rank 0 writes config.yaml at the start; a different earlier one is kept aside."""

    phase = Phase.RECORD

    def pre_train(self) -> None:
        if not self.trainer.is_main:
            return
        path = self.trainer.run_dir.config_path
        data = serialization.to_dict(self.trainer.run_config)
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
        serialization.save_data(data, path)
