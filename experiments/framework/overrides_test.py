"""Overrides are strict and typed: unknown keys suggest close ones, bad values show examples."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Literal

import pytest

from experiments.framework import overrides as ov
from models.config import serialization


@dataclasses.dataclass
class Duration:
    value: int
    unit: str = "steps"

    def __post_init__(self) -> None:
        if self.unit not in ("steps", "epochs"):
            raise ValueError(f"Duration.unit must be steps or epochs, got {self.unit!r}")


@dataclasses.dataclass
class Run:
    project: str = "2026_01_01_x"
    name: str = "r"


@dataclasses.dataclass
class Trainer:
    run: Run = dataclasses.field(default_factory=Run)
    max_duration: Duration = dataclasses.field(default_factory=lambda: Duration(300, "epochs"))
    log_interval: int = 1

    def __post_init__(self) -> None:
        if self.log_interval < 1:
            raise ValueError(f"Trainer.log_interval must be >= 1, got {self.log_interval}")


@dataclasses.dataclass
class Launch:
    num_gpus: int = 1
    clusters: tuple[str, ...] = ()
    preemptible: bool = True
    lr: float | None = 0.1


@dataclasses.dataclass
class Model:
    width: int = 8


@dataclasses.dataclass
class Tree:
    trainer: Trainer = dataclasses.field(default_factory=Trainer)
    launch: Launch = dataclasses.field(default_factory=Launch)
    model: Model = dataclasses.field(default_factory=Model)


ALIASES = {
    "trainer.max_steps": ov.Alias(
        "trainer.max_duration",
        lambda current, raw: dataclasses.replace(current, value=int(raw), unit="steps"),
        "an integer number of steps",
    ),
    "trainer.callbacks.wandb.project": ov.Alias("trainer.run.project"),
}


def _apply(*args: str, **kwargs):
    return ov.apply_overrides(Tree(), ov.parse_overrides(args), ALIASES, **kwargs)


def test_typed_values_land_on_their_fields() -> None:
    tree, applied = _apply(
        "--launch.num_gpus=8",
        "--launch.clusters=[ai2/jupiter,ai2/ceres]",
        "--launch.preemptible=false",
        "--launch.lr=2e-4",
    )
    assert tree.launch == Launch(8, ("ai2/jupiter", "ai2/ceres"), False, 2e-4)
    assert [a.path for a in applied] == [
        "launch.num_gpus",
        "launch.clusters",
        "launch.preemptible",
        "launch.lr",
    ]
    assert applied[0].old == 1 and applied[0].new == 8


def test_aliases_set_their_targets() -> None:
    tree, applied = _apply("--trainer.max_steps=20", "--trainer.callbacks.wandb.project=p")
    assert tree.trainer.max_duration == Duration(20, "steps")
    assert tree.trainer.run.project == "p"
    assert "sets trainer.max_duration" in applied[0].describe()


def test_optional_field_accepts_null() -> None:
    tree, _ = _apply("--launch.lr=null")
    assert tree.launch.lr is None


def test_a_section_can_be_set_from_a_mapping() -> None:
    tree, _ = _apply("--trainer.max_duration={unit: epochs, value: 3}")
    assert tree.trainer.max_duration == Duration(3, "epochs")


def test_unknown_key_names_the_closest_valid_keys() -> None:
    with pytest.raises(ov.OverrideError) as error:
        _apply("--trainer.max_stesp=20")
    message = str(error.value)
    assert "unknown override --trainer.max_stesp" in message
    assert "--trainer.max_steps=300" in message


def test_unknown_leaf_under_a_valid_section_suggests_its_siblings() -> None:
    with pytest.raises(ov.OverrideError, match="--launch.num_gpus=1"):
        _apply("--launch.gpus=4")


@pytest.mark.parametrize(
    ("arg", "expects", "example"),
    [
        ("--launch.num_gpus=eight", "an integer", "--launch.num_gpus=1"),
        ("--launch.num_gpus=2.5", "an integer", "--launch.num_gpus=1"),
        ("--launch.preemptible=maybe", "true or false", "--launch.preemptible=true"),
        ("--trainer.max_steps=lots", "number of steps", "--trainer.max_steps=300"),
    ],
)
def test_wrong_type_says_what_to_type(arg: str, expects: str, example: str) -> None:
    with pytest.raises(ov.OverrideError) as error:
        _apply(arg)
    assert expects in str(error.value) and example in str(error.value)


def test_a_value_the_config_rejects_reports_its_validation_error() -> None:
    with pytest.raises(ov.OverrideError, match="log_interval must be >= 1"):
        _apply("--trainer.log_interval=0")


def test_a_section_is_not_a_field() -> None:
    with pytest.raises(ov.OverrideError, match="is a section"):
        _apply("--launch=3")


def test_refused_prefixes_explain_why() -> None:
    with pytest.raises(ov.OverrideError, match="variant file"):
        _apply("--model.width=4", refused={"model": "model changes are a variant file"})


def test_malformed_and_repeated_arguments_are_errors() -> None:
    with pytest.raises(ov.OverrideError, match="--section.field=value"):
        ov.parse_overrides(["launch.num_gpus=8"])
    with pytest.raises(ov.OverrideError, match="twice"):
        ov.parse_overrides(["--a.b=1", "--a.b=2"])
    assert ov.parse_overrides(["--launch.preemptible"]) == [
        ov.Override("launch.preemptible", "true")
    ]


def test_the_original_tree_is_not_mutated() -> None:
    tree = Tree()
    ov.apply_overrides(tree, ov.parse_overrides(["--launch.num_gpus=4"]))
    assert tree.launch.num_gpus == 1


def test_leaf_keys_lists_every_settable_path() -> None:
    keys = ov.leaf_keys(Tree())
    assert "trainer.max_duration.value" in keys and "launch.clusters" in keys
    assert "trainer" not in keys


class Speed(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@pytest.mark.parametrize(
    ("raw", "hint", "current", "expected"),
    [
        ("1e3", int, 1, 1000),
        ("a,b", tuple[str, ...], (), ("a", "b")),
        ("[3,4]", tuple[int, int], (1, 2), (3, 4)),
        ("SLOW", Speed, Speed.FAST, Speed.SLOW),
        ("slow", Speed, Speed.FAST, Speed.SLOW),
        ("/data/x", Path, Path("/"), Path("/data/x")),
        ("yes", bool, False, True),
        ("2026_01_01", str, "", "2026_01_01"),
    ],
)
def test_a_typed_value_means_what_the_same_value_in_config_yaml_means(
    raw: str, hint, current, expected
) -> None:
    value = ov.parse_value(raw, hint, current)
    assert value == expected and type(value) is type(expected)
    # The saved form of that value reads back identically through the config engine.
    assert serialization.coerce(serialization.to_dict(value), hint) == value


def test_a_literal_field_refuses_a_value_outside_its_choices() -> None:
    assert ov.parse_value("bf16", Literal["fp32", "bf16"], "fp32") == "bf16"
    with pytest.raises(ValueError, match="fp16"):
        ov.parse_value("fp16", Literal["fp32", "bf16"], "fp32")
