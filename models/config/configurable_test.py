"""The Configurable base: keyword-only dataclasses with build(), and the check for one."""

import dataclasses

import pytest

from models.config.configurable import Configurable, is_configurable_class


@dataclasses.dataclass(kw_only=True)
class WidthConfig(Configurable[list]):
    width: int = 4

    def build(self) -> list:
        return [0.0] * self.width


@dataclasses.dataclass(kw_only=True)
class WiderConfig(WidthConfig):
    extra: int

    def build(self) -> list:
        return super().build() + [1.0] * self.extra


def test_subclass_may_add_a_field_without_default_after_defaulted_ones():
    assert WiderConfig(extra=2, width=1).build() == [0.0, 1.0, 1.0]


def test_positional_arguments_are_refused():
    with pytest.raises(TypeError):
        WidthConfig(3)  # type: ignore[misc]


def test_base_build_names_the_class_that_forgot_it():
    @dataclasses.dataclass(kw_only=True)
    class NoBuildConfig(Configurable[int]):
        size: int = 1

    with pytest.raises(NotImplementedError, match="NoBuildConfig"):
        NoBuildConfig().build()
    assert not is_configurable_class(NoBuildConfig)


def test_is_configurable_class_needs_dataclass_keyword_only_and_build():
    assert is_configurable_class(WidthConfig)
    assert is_configurable_class(WiderConfig)

    class NotADataclassConfig(WidthConfig):
        def build(self) -> list:
            return []

    @dataclasses.dataclass
    class PositionalConfig(Configurable[int]):
        size: int = 1

        def build(self) -> int:
            return self.size

    assert not is_configurable_class(NotADataclassConfig)
    assert not is_configurable_class(PositionalConfig)
    assert not is_configurable_class(int)
