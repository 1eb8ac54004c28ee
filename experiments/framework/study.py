"""A study: one ablation as one object (baseline + variants) x seeds x hyperparameter grid.

A study file under experiments/studies/ declares a `Study` and calls `study_cli.main`:

    STUDY = Study(
        name="per_modality_projection",
        hypothesis="a Linear(D, D) per modality improves representations",
        baseline=base,                                   # experiment modules, imported
        variants=(base_encoder_per_mod_proj, base_decoder_per_mod_proj),
        seeds=(0, 1, 2),
        grid={"train_module.optimizer.lr": (1e-4, 2e-4)},   # optional, every variant alike
        launch=LaunchSettings(num_gpus=8),
        project="per_modality_projection_experiments",   # dated at launch: YYYY_MM_DD_<this>
    )

Runs: one per (experiment, grid point, seed), the baseline's included, each exactly the
job an experiment's `launch` submits (`<experiment> train <run> <cluster> <overrides>`).
Their overrides, in order: the study's launch settings, its overrides for the cluster and
the command line's (a later one of the same key wins), the grid point's, `--seed`, then
the W&B project, group (the study), job type (the variant) and notes (the hypothesis).

Identical hyperparameters: every run's resolved config is compared with the baseline run
of the same seed and grid point; a key that differs outside the variant's CHANGES (a
builder that changed more than it declares, an override only one variant got) refuses the
whole study, naming the variant and the key, before anything is built, pushed or submitted.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.framework import diff, hygiene, naming
from experiments.framework.experiment_config import IDENTITY_FIELDS, Builders, ExperimentConfig
from launcher.settings import LaunchSettings
from models.names import names

WANDB = "trainer.callbacks.wandb"
RUN_NAMING_FIELDS = (
    *IDENTITY_FIELDS,
    "trainer.run.name",
    f"{WANDB}.name",
    # The variant's name as W&B's job type: it differs between variants by design.
    f"{WANDB}.job_type",
)
"""Config paths that name a run or its variant; they differ within a study by design."""


class StudyError(ValueError):
    """The study declaration or its command line is wrong (exit status 2)."""


@dataclasses.dataclass(frozen=True)
class Study:
    """An ablation: baseline and variants x seeds x grid, launched and compared as one.

    Attributes:
        name: the study's name (its file and Bazel target; W&B group of its runs).
        hypothesis: what the variants are expected to show, in one sentence or two.
        baseline: the experiment module every variant is compared with.
        variants: the experiment modules under test (each declares its CHANGES).
        seeds: model seeds; every experiment runs each (3 gives a t-interval, 1 none).
        grid: config key -> values; every combination is run for every experiment alike
            (the reference's lr x wd sweep). Empty: one grid point.
        launch: shared resources of every run (num_gpus, clusters, priority, ...).
        project: the W&B project's description; launch dates it (YYYY_MM_DD_<project>).
        cluster_overrides: cluster -> overrides every run gets there (e.g. nano width and a
            CPU-sized step on `local`), applied before the command line's.
    """

    name: str
    hypothesis: str
    baseline: types.ModuleType
    variants: tuple[types.ModuleType, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    grid: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    launch: LaunchSettings = dataclasses.field(default_factory=LaunchSettings)
    project: str = ""
    cluster_overrides: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = declaration_problems(self)
        if problems:
            raise StudyError(f"study {self.name!r}: " + "; ".join(problems))

    @property
    def experiments(self) -> tuple[types.ModuleType, ...]:
        """The baseline, then the variants."""
        return (self.baseline, *self.variants)

    @property
    def experiment_names(self) -> tuple[str, ...]:
        return tuple(hygiene.experiment_name(module) for module in self.experiments)

    @property
    def baseline_name(self) -> str:
        return hygiene.experiment_name(self.baseline)

    def changes(self, experiment: str) -> tuple[str, ...]:
        """The config sections `experiment` may change against the baseline (none for it)."""
        if experiment == self.baseline_name:
            return ()
        module = self.experiments[self.experiment_names.index(experiment)]
        return hygiene.declared_changes(module)

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the grid's values, in declaration order ([{}] without one)."""
        keys = list(self.grid)
        return [
            dict(zip(keys, values, strict=True))
            for values in itertools.product(*(self.grid[key] for key in keys))
        ]

    def dated_project(self) -> str:
        return naming.dated_project(self.project or f"{self.name}_study")


def declaration_problems(study: Study) -> list[str]:
    """What is wrong with a declaration, each with its fix ([] when nothing)."""
    problems = []
    if names.experiment_problem(study.name):  # a study is named like an experiment
        problems.append(
            f"name {names.shown(study.name)} must be lowercase letters, digits and '_', "
            "starting with a letter (the file experiments/studies/<name>.py)"
        )
    if not study.hypothesis.strip():
        problems.append("hypothesis is empty: say what the variants should show")
    if not study.variants:
        problems.append("variants is empty: name the experiment modules under test")
    modules = [study.baseline, *study.variants]
    if not all(isinstance(module, types.ModuleType) for module in modules):
        problems.append("baseline and variants must be experiment modules (import them)")
        return problems
    experiment_names = [hygiene.experiment_name(module) for module in modules]
    if len(set(experiment_names)) != len(experiment_names):
        problems.append(f"an experiment appears twice among {experiment_names}")
    if not study.seeds or len(set(study.seeds)) != len(study.seeds):
        problems.append(f"seeds must be distinct and at least one, got {study.seeds}")
    if any(not isinstance(seed, int) or seed < 0 for seed in study.seeds):
        problems.append(f"seeds must be whole numbers >= 0, got {study.seeds}")
    for key, values in study.grid.items():
        if not values or isinstance(values, str):
            problems.append(f"grid[{key!r}] must be a non-empty tuple of values")
        if key.split(".", 1)[0] == "model" or key in ("seed", "trainer.seed"):
            problems.append(
                f"grid[{key!r}]: the model is a variant's change and seeds are `seeds`; a grid "
                "sweeps hyperparameters every variant shares"
            )
    for module in study.variants:
        try:
            hygiene.declared_changes(module)
        except hygiene.HygieneError as error:
            problems.append(str(error))
    return problems


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """One run of a study (before it is resolved or launched)."""

    name: str
    experiment: str
    seed: int
    grid: Mapping[str, Any]
    overrides: tuple[str, ...]

    @property
    def grid_label(self) -> str:
        return grid_label(self.grid)

    @property
    def pairing_key(self) -> tuple[int, str]:
        """Runs with the same key are paired: same seed, same grid point."""
        return (self.seed, self.grid_label)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def grid_label(point: Mapping[str, Any]) -> str:
    """`lr2e-4_weight_decay0.02`: the grid point in a run name (last part of each key)."""
    parts = []
    for key, value in point.items():
        short = key.rsplit(".", 1)[-1]
        parts.append(re.sub(r"[^A-Za-z0-9._+-]+", "-", f"{short}{_format_value(value)}"))
    return "_".join(parts)


def grid_overrides(point: Mapping[str, Any]) -> list[str]:
    """The grid point as overrides (lists as comma-separated values, like the CLI reads)."""
    texts = []
    for key, value in point.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(_format_value(item) for item in value)
        texts.append(f"--{key}={_format_value(value)}")
    return texts


def plan_runs(
    study: Study, cluster: str, project: str, cli_overrides: Sequence[str] = ()
) -> list[PlannedRun]:
    """Every run of the study on `cluster`: experiments x grid points x seeds."""
    shared = shared_overrides(study, cluster, cli_overrides)
    runs = []
    for experiment in study.experiment_names:
        for point in study.grid_points():
            for seed in study.seeds:
                label = grid_label(point)
                name = f"{experiment}_s{seed}" + (f"_{label}" if label else "")
                overrides = (
                    *shared,
                    *grid_overrides(point),
                    f"--seed={seed}",
                    f"--{WANDB}.project={project}",
                    f"--{WANDB}.group={study.name}",
                    f"--{WANDB}.job_type={experiment}",
                    f"--{WANDB}.notes={' '.join(study.hypothesis.split())}",
                )
                runs.append(PlannedRun(name, experiment, seed, dict(point), overrides))
    return runs


def shared_overrides(study: Study, cluster: str, cli_overrides: Sequence[str] = ()) -> list[str]:
    """What every run on `cluster` gets: the study's launch settings, its overrides for the
    cluster, then the command line's; a later one replaces an earlier one of the same key
    (`--launch.num_gpus=1` for `local` replaces the study's 8)."""
    merged: dict[str, str] = {}
    for text in (
        *launch_overrides(study),
        *study.cluster_overrides.get(cluster, ()),
        *cli_overrides,
    ):
        key = text.split("=", 1)[0]
        merged.pop(key, None)
        merged[key] = text
    return list(merged.values())


def launch_overrides(study: Study) -> list[str]:
    """The study's `launch` settings as overrides (the same for every run)."""
    defaults = LaunchSettings()
    texts = []
    for field in dataclasses.fields(study.launch):
        value = getattr(study.launch, field.name)
        if value != getattr(defaults, field.name):
            if isinstance(value, (list, tuple)):
                value = "[" + ",".join(str(item) for item in value) + "]"
            texts.append(f"--launch.{field.name}={value}")
    return texts


def builders_of(study: Study) -> dict[str, Builders]:
    return {
        name: Builders.from_module(module)
        for name, module in zip(study.experiment_names, study.experiments, strict=True)
    }


@dataclasses.dataclass(frozen=True)
class HyperparameterDifference:
    """A key where a run differs from its paired baseline run outside the variant's CHANGES."""

    run: str
    experiment: str
    change: diff.FieldChange
    declared: tuple[str, ...]

    def message(self, baseline: str) -> str:
        return (
            f"variant {self.experiment} (run {self.run}) would get {self.change.path} = "
            f"{diff._show(self.change.other)} where {baseline} gets "
            f"{diff._show(self.change.base)}, outside its CHANGES {self.declared}"
        )


def hyperparameter_differences(
    study: Study, runs: Sequence[PlannedRun], configs: Mapping[str, ExperimentConfig]
) -> list[HyperparameterDifference]:
    """Every key where a run's config differs from its paired baseline run's outside the
    variant's CHANGES, and where baseline runs differ from each other beyond their seed
    and grid point (`configs`: run name -> resolved config)."""
    baseline_runs = {run.pairing_key: run for run in runs if run.experiment == study.baseline_name}
    found = []
    for run in runs:
        paired = baseline_runs.get(run.pairing_key)
        if paired is None or paired is run:
            continue
        declared = study.changes(run.experiment)
        for change in diff.diff_configs(
            configs[paired.name], configs[run.name], ignore=RUN_NAMING_FIELDS
        ):
            if change.section not in declared:
                found.append(HyperparameterDifference(run.name, run.experiment, change, declared))
    # The baseline's own runs at one grid point: only the seed may differ between them.
    firsts: dict[str, PlannedRun] = {}
    for run in runs:
        if run.experiment != study.baseline_name:
            continue
        first = firsts.setdefault(run.grid_label, run)
        for change in diff.diff_configs(
            configs[first.name], configs[run.name], ignore=RUN_NAMING_FIELDS
        ):
            if change.path != "trainer.seed":
                found.append(HyperparameterDifference(run.name, run.experiment, change, ()))
    return found
