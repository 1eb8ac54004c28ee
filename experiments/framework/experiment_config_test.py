"""The experiment config: builders combine into one tree, variants swap in config
subclasses without restating fields, and the tree rebuilds from its plain data."""

from __future__ import annotations

import dataclasses
import types

import pytest

from experiments.framework.experiment_config import (
    Builders,
    ExperimentConfig,
    VisualizeSettings,
    as_subclass,
)
from launcher.settings import LaunchSettings
from models.config import serialization


@dataclasses.dataclass
class Encoder:
    width: int = 8
    depth: int = 2


@dataclasses.dataclass
class EncoderWithProjection(Encoder):
    bias: bool = True


def test_as_subclass_keeps_every_field_and_adds_the_new_ones() -> None:
    swapped = as_subclass(Encoder(width=16, depth=3), EncoderWithProjection, bias=False)
    assert type(swapped) is EncoderWithProjection
    assert (swapped.width, swapped.depth, swapped.bias) == (16, 3, False)


def test_as_subclass_refuses_an_unrelated_class() -> None:
    with pytest.raises(TypeError, match="not a subclass"):
        as_subclass(Encoder(), LaunchSettings)


def test_builders_from_a_module_need_all_seven() -> None:
    module = types.ModuleType("experiments.incomplete")
    module.build_model_config = lambda common: None
    with pytest.raises(AttributeError, match="build_dataset_config"):
        Builders.from_module(module)


def test_launch_and_visualize_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="priority must be one of"):
        LaunchSettings(priority="asap")
    with pytest.raises(ValueError, match="num_samples"):
        VisualizeSettings(num_samples=0)


def test_an_experiment_config_rebuilds_from_its_plain_data() -> None:
    config = ExperimentConfig(
        experiment="base",
        run_name="base_1",
        cluster="local",
        model=EncoderWithProjection(width=4),
        dataset=Encoder(),
        data_loader=Encoder(),
        train_module=Encoder(),
        trainer=Encoder(),
        launch=LaunchSettings(num_gpus=8, clusters=("a", "b")),
        visualize=VisualizeSettings(),
    )
    assert ExperimentConfig.from_dict(config.as_dict()) == config
    assert serialization.from_json(serialization.to_json(config)) == config
    with pytest.raises(serialization.ConfigFormatError, match="ExperimentConfig"):
        ExperimentConfig.from_dict(serialization.to_dict(LaunchSettings()))


@dataclasses.dataclass
class Trainer:
    seed: int = 0


def _config_with_trainer_seed(seed: int) -> ExperimentConfig:
    return ExperimentConfig(
        experiment="base",
        run_name="base_1",
        cluster="local",
        model=Encoder(),
        dataset=Encoder(),
        data_loader=Encoder(),
        train_module=Encoder(),
        trainer=Trainer(seed=seed),
        launch=LaunchSettings(),
        visualize=VisualizeSettings(),
    )


def test_the_seed_is_read_from_the_trainer_and_cannot_be_set_beside_it() -> None:
    config = _config_with_trainer_seed(7)
    assert config.seed == 7
    with pytest.raises(TypeError, match="seed"):
        dataclasses.replace(config, seed=8)


def test_a_config_yaml_with_the_retired_top_level_seed_loads_into_trainer_seed() -> None:
    # Files written before trainer.seed was the one field had a top-level `seed:`, the
    # source the trainer's copy was synced from; they load with that seed in the trainer.
    old = _config_with_trainer_seed(7).as_dict()
    old["seed"] = 7
    loaded = serialization.from_yaml(serialization.to_yaml(old))
    assert loaded == _config_with_trainer_seed(7)
    old["trainer"]["seed"] = 12536  # a hand-edited file: the top-level value ruled
    assert serialization.from_dict(old).trainer.seed == 7
