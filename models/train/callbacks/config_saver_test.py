"""Tests for writing the resolved config as config.yaml."""

import dataclasses
import enum
import types
from pathlib import Path

import torch
import yaml

from models.config import serialization
from models.train.callbacks import config_saver
from models.train.run_dir import RunDirectory


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Inner:
    sizes: tuple[int, ...] = (1, 2)
    color: Color = Color.RED


@dataclasses.dataclass
class Outer:
    inner: Inner = dataclasses.field(default_factory=Inner)
    path: Path = Path("/data")
    dtype: torch.dtype = torch.bfloat16
    lr: float = 1e-4


def _saver(tmp_path: Path, config: object) -> config_saver.ConfigSaverCallback:
    callback = config_saver.ConfigSaverConfig().build()
    run_dir = RunDirectory(tmp_path).create()
    callback.attach(types.SimpleNamespace(is_main=True, run_dir=run_dir, run_config=config))
    return callback


def test_nested_dataclasses_become_yaml_with_class_names(tmp_path: Path) -> None:
    _saver(tmp_path, Outer()).pre_train()
    data = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert data == {
        "_class_": f"{__name__}.Outer",
        "inner": {"_class_": f"{__name__}.Inner", "sizes": [1, 2], "color": "red"},
        "path": "/data",
        "dtype": "torch.bfloat16",
        "lr": 1e-4,
    }


def test_the_written_file_rebuilds_the_config_through_the_one_engine(tmp_path: Path) -> None:
    config = Outer(inner=Inner(sizes=(3,)), lr=0.5)
    _saver(tmp_path, config).pre_train()
    assert serialization.load(tmp_path / "config.yaml") == config


def test_a_changed_config_on_restart_keeps_the_earlier_one_aside(tmp_path: Path) -> None:
    _saver(tmp_path, Outer(lr=1.0)).pre_train()
    _saver(tmp_path, Outer(lr=1.0)).pre_train()  # unchanged: nothing kept aside
    assert [p.name for p in tmp_path.glob("config*.yaml")] == ["config.yaml"]
    _saver(tmp_path, Outer(lr=2.0)).pre_train()
    kept = list(tmp_path.glob("config.before-*.yaml"))
    assert len(kept) == 1 and yaml.safe_load(kept[0].read_text())["lr"] == 1.0
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["lr"] == 2.0


def test_a_corrupt_config_yaml_is_kept_aside_and_does_not_block_a_restart(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("lr: [unclosed\n  : :\n")
    _saver(tmp_path, Outer(lr=3.0)).pre_train()
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["lr"] == 3.0
    kept = list(tmp_path.glob("config.corrupt-*.yaml"))
    assert len(kept) == 1 and "unclosed" in kept[0].read_text()
