"""Ablation hygiene: a variant may differ from its baseline only where its hypothesis says.

The baseline is the experiment the variant imports as `baseline` (experiment_config's
BASELINE_NAME): base for the v1 ablations, v1_2_base for a v1.2 one, and so on.

Two checks back the guide's "keep every other hyperparameter identical to the baseline":

1. `check_changes`: build the variant's and its baseline's resolved configs with the same
   CommonComponents (same run name, cluster and project, so identity fields agree) and
   report every field outside the variant's declared `CHANGES` sections that differs:
   learning rate, batch size, optimizer, duration, seeds, data, anything.
2. `check_variant_source`: a variant file stays a small derivation of base. Its top
   level holds only a docstring, imports, `CHANGES`, `build_*_config` functions and the
   `if __name__ == "__main__":` block, and it stays under `MAX_VARIANT_LINES` lines. The
   415-line copy of a 426-line base that differs in 10 lines is what this prevents.
"""

from __future__ import annotations

import ast
import dataclasses
import types
from collections.abc import Sequence
from pathlib import Path

from experiments.framework import diff
from experiments.framework.experiment_config import (
    BASELINE_NAME,
    IDENTITY_FIELDS,
    SECTIONS,
    Builders,
    CommonComponents,
    build_config,
)

MAX_VARIANT_LINES = 40
"""A variant that needs more than this is probably copying base instead of deriving."""


class HygieneError(AssertionError):
    """A variant breaks ablation hygiene; the message names each offending field."""


@dataclasses.dataclass(frozen=True)
class Violation:
    """A field a variant changes outside its declared sections."""

    experiment: str
    cluster: str
    change: diff.FieldChange
    declared: tuple[str, ...]
    baseline: str = "base"

    def message(self) -> str:
        return (
            f"{self.experiment} changes {self.change.path} ({self.baseline} "
            f"{diff._show(self.change.base)} -> {self.experiment} "
            f"{diff._show(self.change.other)}, cluster {self.cluster}), but its CHANGES = "
            f"{self.declared} does not include {self.change.section!r}. Keep "
            f"{self.baseline}'s value, or make this a separate experiment whose hypothesis is "
            "about it."
        )


def declared_changes(module: types.ModuleType) -> tuple[str, ...]:
    """The module's CHANGES, checked against the config's sections."""
    changes = getattr(module, "CHANGES", None)
    if changes is None:
        raise HygieneError(
            f"{module.__name__} has no CHANGES: declare the config sections its hypothesis "
            f'changes, e.g. CHANGES = ("model",); sections: {SECTIONS}'
        )
    if isinstance(changes, str) or not isinstance(changes, (tuple, list)):
        raise HygieneError(f"{module.__name__}.CHANGES must be a tuple of section names")
    unknown = [name for name in changes if name not in SECTIONS]
    if unknown:
        raise HygieneError(
            f"{module.__name__}.CHANGES names unknown section(s) {unknown}; sections: {SECTIONS}"
        )
    return tuple(changes)


def experiment_name(module: types.ModuleType) -> str:
    return module.__name__.rpartition(".")[2]


def baseline_of(variant: types.ModuleType) -> types.ModuleType:
    """The experiment module `variant` imports as its baseline, checked to lead back to a
    root baseline (one that names none, like base) without a cycle."""
    baseline = getattr(variant, BASELINE_NAME, None)
    if not isinstance(baseline, types.ModuleType):
        raise HygieneError(
            f"{variant.__name__} names no baseline: import the experiment it is compared to "
            "as `baseline`, e.g. `from experiments import v1_2_base as baseline`"
        )
    seen = [experiment_name(variant)]
    module: types.ModuleType | None = baseline
    while isinstance(module, types.ModuleType):
        if experiment_name(module) in seen:
            chain = " -> ".join([*seen, experiment_name(module)])
            raise HygieneError(f"{variant.__name__}'s baselines form a cycle: {chain}")
        seen.append(experiment_name(module))
        module = getattr(module, BASELINE_NAME, None)
    return baseline


def check_changes(
    variant: types.ModuleType,
    base: types.ModuleType,
    clusters: Sequence[str] = ("local",),
    run_name: str | None = None,
) -> list[Violation]:
    """Fields where `variant` differs from `base` outside `variant.CHANGES`.

    Args:
        variant: the experiment module (its namespace holds the seven builders).
        base: the baseline experiment module.
        clusters: clusters to resolve both configs for (cluster-dependent defaults are
            compared on each).
        run_name: the run name used for both (default: the variant's name).
    """
    declared = declared_changes(variant)
    name = experiment_name(variant)
    variant_builders = Builders.from_module(variant)
    base_builders = Builders.from_module(base)
    violations = []
    for cluster in clusters:
        common: CommonComponents = variant_builders.common_components_builder(
            name, "dry_run", run_name or name, cluster
        )
        base_config = build_config(base_builders, common)
        variant_config = build_config(variant_builders, common)
        for change in diff.diff_configs(base_config, variant_config, ignore=IDENTITY_FIELDS):
            if change.section not in declared:
                violations.append(Violation(name, cluster, change, declared, experiment_name(base)))
    return violations


def assert_hygienic(
    variant: types.ModuleType, base: types.ModuleType, clusters: Sequence[str] = ("local",)
) -> None:
    """Raise HygieneError listing every violation of `check_changes`."""
    violations = check_changes(variant, base, clusters)
    if violations:
        raise HygieneError("\n".join(v.message() for v in violations))


# -- source structure ------------------------------------------------------------------


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    return (
        isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _is_builder(name: str) -> bool:
    return name.startswith("build_") and name.endswith("_config")


def check_variant_source(path: str | Path, max_lines: int = MAX_VARIANT_LINES) -> list[str]:
    """Problems with a variant file's structure (empty when it is a clean derivation)."""
    path = Path(path)
    source = path.read_text()
    problems = []
    lines = source.count("\n") + (0 if source.endswith("\n") else 1)
    if lines > max_lines:
        problems.append(
            f"{path.name} has {lines} lines (limit {max_lines}): derive from base's builders "
            "instead of copying them"
        )
    tree = ast.parse(source, filename=str(path))
    body = list(tree.body)
    if not (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        problems.append(f"{path.name} must open with a docstring (hypothesis, change, launch)")
    else:
        doc = body[0].value.value
        for word in ("Hypothesis", "Change", "Launch"):
            if word.lower() not in doc.lower():
                problems.append(f"{path.name}'s docstring does not state its {word}")
        body = body[1:]
    has_changes = has_main = False
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.FunctionDef) and _is_builder(node.name):
            continue
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
            "CHANGES"
        ]:
            has_changes = True
            continue
        if _is_main_guard(node):
            has_main = True
            continue
        what = getattr(node, "name", None) or type(node).__name__
        problems.append(
            f"{path.name}:{node.lineno}: {what} is not allowed in a variant file; it may define "
            "only build_*_config functions, CHANGES and the __main__ block"
        )
    if not has_changes:
        problems.append(f'{path.name} does not declare CHANGES (e.g. CHANGES = ("model",))')
    if not has_main:
        problems.append(f'{path.name} has no `if __name__ == "__main__":` block calling main')
    return problems
