"""Ablation hygiene: variants may differ from base only in their declared sections, and
variant files stay small derivations."""

from __future__ import annotations

import dataclasses
import importlib
import types
from pathlib import Path

import pytest

from experiments.framework import hygiene
from experiments.framework.experiment_config import BUILDER_NAMES

BASE = importlib.import_module("experiments.base")
EXPERIMENTS_DIR = Path(BASE.__file__).parent


def make_variant(name: str, changes: tuple[str, ...] | None, **builders) -> types.ModuleType:
    """A temporary experiment module: base's builders, some replaced, with CHANGES."""
    module = types.ModuleType(f"experiments.{name}")
    for builder in BUILDER_NAMES.values():
        setattr(module, builder, getattr(BASE, builder))
    for builder, function in builders.items():
        setattr(module, builder, function)
    if changes is not None:
        module.CHANGES = changes
    return module


def build_train_module_config_with_lr(common):
    config = BASE.build_train_module_config(common)
    optimizer = dataclasses.replace(config.optimizer, lr=3e-4)
    return dataclasses.replace(config, optimizer=optimizer)


def test_a_variant_that_also_changes_the_learning_rate_fails_naming_the_field() -> None:
    sneaky = make_variant(
        "base_sneaky_lr",
        ("model",),
        build_train_module_config=build_train_module_config_with_lr,
    )
    with pytest.raises(hygiene.HygieneError) as error:
        hygiene.assert_hygienic(sneaky, BASE)
    message = str(error.value)
    assert "train_module.optimizer.lr" in message
    assert "base 0.0001" in message and "base_sneaky_lr 0.0003" in message
    assert "CHANGES = ('model',)" in message


def test_the_same_change_passes_when_declared() -> None:
    honest = make_variant(
        "base_lr3e-4",
        ("train_module",),
        build_train_module_config=build_train_module_config_with_lr,
    )
    assert hygiene.check_changes(honest, BASE) == []


def test_every_differing_field_is_reported_once() -> None:
    def build_dataloader_config(common):
        config = BASE.build_dataloader_config(common)
        return dataclasses.replace(config, seed=1, global_batch_size=256)

    def build_train_module_config(common):
        return dataclasses.replace(BASE.build_train_module_config(common), microbatch_size=16)

    variant = make_variant(
        "base_half_batch",
        ("model",),
        build_dataloader_config=build_dataloader_config,
        build_train_module_config=build_train_module_config,
    )
    paths = sorted(v.change.path for v in hygiene.check_changes(variant, BASE))
    assert paths == [
        "data_loader.global_batch_size",
        "data_loader.seed",
        "train_module.microbatch_size",
    ]


def test_changes_must_be_declared_with_known_sections() -> None:
    with pytest.raises(hygiene.HygieneError, match="has no CHANGES"):
        hygiene.check_changes(make_variant("base_x", None), BASE)
    with pytest.raises(hygiene.HygieneError, match="unknown section"):
        hygiene.check_changes(make_variant("base_x", ("optimizer",)), BASE)


def test_a_clean_variant_file_passes_the_structure_check() -> None:
    assert hygiene.check_variant_source(EXPERIMENTS_DIR / "base_no_contrastive.py") == []


def test_helpers_constants_and_length_are_reported(tmp_path: Path) -> None:
    source = (EXPERIMENTS_DIR / "base_no_contrastive.py").read_text()
    bad = source.replace(
        'CHANGES = ("train_module",)',
        'CHANGES = ("train_module",)\nLR = 3e-4\n\n\ndef helper():\n    return LR\n' + "\n" * 10,
    )
    path = tmp_path / "base_bad.py"
    path.write_text(bad)
    problems = "\n".join(hygiene.check_variant_source(path))
    assert "helper is not allowed" in problems
    assert "Assign is not allowed" in problems
    assert "lines (limit 40)" in problems


def test_a_variant_without_docstring_or_main_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "base_bare.py"
    path.write_text("CHANGES = ('model',)\n\n\ndef build_model_config(common):\n    return None\n")
    problems = "\n".join(hygiene.check_variant_source(path))
    assert "must open with a docstring" in problems
    assert "__main__" in problems


def test_a_variant_is_held_to_the_baseline_it_imports_not_to_base() -> None:
    """Several baselines: a variant of a baseline that itself raised the lr keeps that lr
    without declaring it, and a change of its own is reported against that baseline."""
    v2_base = make_variant(
        "v2_base", ("train_module",), build_train_module_config=build_train_module_config_with_lr
    )

    def build_dataloader_config(common):
        return dataclasses.replace(BASE.build_dataloader_config(common), seed=7)

    v2_variant = make_variant(
        "v2_seed7", ("model",), **{name: getattr(v2_base, name) for name in BUILDER_NAMES.values()}
    )
    v2_variant.build_dataloader_config = build_dataloader_config
    v2_variant.baseline = v2_base
    assert hygiene.baseline_of(v2_variant) is v2_base
    violations = hygiene.check_changes(v2_variant, v2_base)
    assert [v.change.path for v in violations] == ["data_loader.seed"]
    assert "(v2_base 3622 -> v2_seed7 7" in violations[0].message()
    assert "Keep v2_base's value" in violations[0].message()
    # Against v1 base the inherited lr would count as a change outside CHANGES too.
    against_base = sorted(v.change.path for v in hygiene.check_changes(v2_variant, BASE))
    assert against_base == ["data_loader.seed", "train_module.optimizer.lr"]


def test_a_variant_without_a_baseline_or_with_a_cycle_of_baselines_is_refused() -> None:
    orphan = make_variant("base_orphan", ("model",))
    with pytest.raises(hygiene.HygieneError, match="names no baseline: import the experiment"):
        hygiene.baseline_of(orphan)
    first, second = make_variant("loop_a", ("model",)), make_variant("loop_b", ("model",))
    first.baseline, second.baseline = second, first
    with pytest.raises(hygiene.HygieneError, match="cycle: loop_a -> loop_b -> loop_a"):
        hygiene.baseline_of(first)
