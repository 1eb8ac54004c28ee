"""Config trees survive YAML and JSON with their classes, tuples, enums and dtypes."""

from __future__ import annotations

import dataclasses
import enum

import pytest
import torch

from models.config import serialization


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


@dataclasses.dataclass
class Inner:
    width: int = 8
    rate: float = 0.5
    names: tuple[str, ...] = ("a", "b")


@dataclasses.dataclass
class WiderInner(Inner):
    """A variant's subclass: must come back as itself, not as Inner."""

    extra: int = 3


@dataclasses.dataclass
class Outer:
    inner: Inner
    mode: Mode = Mode.FAST
    groups: dict[str, tuple[tuple[str, ...], ...]] = dataclasses.field(default_factory=dict)
    pairs: tuple[float, float] = (0.9, 1.0)
    maybe: int | None = None
    dtype: torch.dtype = torch.float32
    either: Inner | None = None
    counted: dict[int, str] = dataclasses.field(default_factory=dict)
    derived: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.derived = self.inner.width * 2


def _tree() -> Outer:
    return Outer(
        inner=WiderInner(width=4, names=("x",), extra=7),
        mode=Mode.SLOW,
        groups={"s2": (("B02", "B03"), ("B05",))},
        maybe=5,
        dtype=torch.bfloat16,
        either=Inner(width=2),
        counted={3: "three"},
    )


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_rebuilds_an_equal_tree_with_subclasses(fmt: str) -> None:
    tree = _tree()
    text = serialization.to_yaml(tree) if fmt == "yaml" else serialization.to_json(tree)
    back = serialization.from_yaml(text) if fmt == "yaml" else serialization.from_json(text)
    assert back == tree
    assert type(back.inner) is WiderInner
    assert isinstance(back.groups["s2"], tuple) and isinstance(back.groups["s2"][0], tuple)
    assert back.mode is Mode.SLOW and back.dtype is torch.bfloat16
    assert back.derived == 8  # init=False fields are recomputed, not read


def test_written_data_names_each_class() -> None:
    data = serialization.to_dict(_tree())
    assert data["_class_"].endswith("serialization_test.Outer")
    assert data["inner"]["_class_"].endswith("serialization_test.WiderInner")
    assert "derived" not in data


def test_save_and_load_pick_the_format_from_the_suffix(tmp_path) -> None:
    tree = _tree()
    for name in ("c.yaml", "c.json"):
        path = serialization.save(tree, tmp_path / name)
        assert serialization.load(path) == tree
    assert (tmp_path / "c.json").read_text().lstrip().startswith("{")


def test_unknown_field_in_a_file_is_an_error_naming_it() -> None:
    data = serialization.to_dict(Inner())
    data["widht"] = 3
    with pytest.raises(serialization.ConfigFormatError, match="widht"):
        serialization.from_dict(data)


def test_classes_outside_the_repository_are_refused() -> None:
    with pytest.raises(serialization.ConfigFormatError, match="outside"):
        serialization.from_dict({"_class_": "subprocess.Popen", "args": "ls"})


def test_wrong_scalar_type_is_reported_with_its_path() -> None:
    data = serialization.to_dict(Outer(inner=Inner()))
    data["inner"]["width"] = "wide"
    with pytest.raises(serialization.ConfigFormatError, match="inner.width"):
        serialization.from_dict(data)


def test_unserialisable_values_are_refused() -> None:
    with pytest.raises(serialization.ConfigFormatError, match="object"):
        serialization.to_dict(Outer(inner=Inner(names=(object(),))))


def test_a_moved_class_still_loads_under_its_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Run folders written before a class moved name its old path; CLASS_ALIASES maps it.
    # (experiments/framework/config_classes_test.py checks the real table's entries.)
    data = serialization.to_dict(Inner(width=3))
    old_path = "models.config.retired_module.Inner"
    monkeypatch.setitem(serialization.CLASS_ALIASES, old_path, data["_class_"])
    data["_class_"] = old_path
    assert serialization.from_dict(data) == Inner(width=3)


def test_the_engine_imports_no_torch_and_nothing_above_models() -> None:
    import os
    import subprocess
    import sys

    # A fresh interpreter: this test process has torch loaded already. Same sys.path as here.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    probe = (
        "import sys; import models.config.serialization; "
        "bad = [m for m in sys.modules if m == 'torch' or m.split('.')[0] in "
        "('experiments', 'launcher', 'tools')]; print(bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "[]"
