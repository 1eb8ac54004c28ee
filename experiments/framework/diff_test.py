"""Config diffs name each changed leaf with both values, including changed classes."""

from __future__ import annotations

import dataclasses

from experiments.framework import diff


@dataclasses.dataclass
class Enc:
    width: int = 8
    names: tuple[str, ...] = ("s2", "s1")


@dataclasses.dataclass
class EncWithProjection(Enc):
    projection_bias: bool = True


@dataclasses.dataclass
class Tree:
    model: Enc
    lr: float = 1e-4
    tags: dict[str, int] = dataclasses.field(default_factory=dict)


def test_identical_trees_have_no_diff() -> None:
    assert diff.diff_configs(Tree(Enc()), Tree(Enc())) == []
    assert "identical" in diff.format_diff([])


def test_a_subclassed_component_shows_its_class_and_new_fields() -> None:
    changes = diff.diff_configs(Tree(Enc()), Tree(EncWithProjection()))
    paths = {change.path for change in changes}
    assert paths == {"model._class_", "model.projection_bias"}
    added = next(c for c in changes if c.path == "model.projection_bias")
    assert added.base == diff.ABSENT and added.other is True
    assert {change.section for change in changes} == {"model"}


def test_scalar_and_list_changes_carry_both_values() -> None:
    changes = diff.diff_configs(Tree(Enc(), lr=1e-4), Tree(Enc(names=("s2",)), lr=2e-4))
    by_path = {change.path: change for change in changes}
    assert by_path["lr"].base == 1e-4 and by_path["lr"].other == 2e-4
    assert by_path["model.names"].other == ["s2"]
    text = diff.format_diff(changes)
    assert "lr: 0.0001 -> 0.0002" in text and "sections: lr, model" in text


def test_ignored_prefixes_are_left_out() -> None:
    changes = diff.diff_configs(Tree(Enc(), tags={"a": 1}), Tree(Enc(), tags={"a": 2}), ("tags",))
    assert changes == []


def test_int_and_float_of_equal_value_still_differ() -> None:
    changes = diff.diff_configs(Tree(Enc(), lr=1), Tree(Enc(), lr=1.0))
    assert [c.path for c in changes] == ["lr"]
