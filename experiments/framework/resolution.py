"""From a command line to a resolved experiment config: overrides, aliases, names.

`resolve(builders, argv, experiment)` parses `SUBCOMMAND RUN_NAME CLUSTER [--k=v ...]`,
runs the builders, applies the overrides (strict, typed; see overrides.py) and checks the
guide's naming rules. The alias table, the refused sections and the options below are the
frozen part of the CLI (cli_test.py pins them).

One option reaches into the model: `--model_size=<name>` (OPTIONS) runs the variant at
another size of models/latent_mim/sizes.py, e.g. a study "at nano width on CPU". It resizes
the encoder and decoder (widths, depths, heads, mlp ratio; the decoder's encoder and output
widths) and keeps every config class, so the variant's change stays what it is; any other
model change is a variant file (`--model.*` is refused). It is applied to the built config
before the other overrides, to the baseline's too where dry_run diffs against it, and it is
recorded in overrides.txt like any override, so a run folder re-creates it.

`--estimate.gpu=<name>` (dry_run only) picks the accelerator of models/train/accelerators.py
that dry_run's memory and time estimate is for (default: H100); it changes no config.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from typing import Any

from experiments.framework import naming
from experiments.framework import overrides as ov
from experiments.framework.experiment_config import (
    Builders,
    CommonComponents,
    ExperimentConfig,
    build_config,
)
from models.latent_mim import sizes
from models.names import names
from models.train import accelerators

SUBCOMMANDS = ("dry_run", "train", "launch", "evaluate", "visualize")

USAGE = """usage: <experiment> SUBCOMMAND RUN_NAME CLUSTER [--resume] [--key=value ...]
  SUBCOMMAND: dry_run, train, launch, evaluate or visualize
  --resume (train, launch): continue an existing run of the same setup
  --untrained (evaluate, visualize): use the untrained model when the run has no checkpoint
  --model_size=NAME: the variant's encoder and decoder at a size of models/latent_mim/sizes.py
      (e.g. nano, 128 wide, for CPU), keeping the variant's config classes
  --estimate.gpu=NAME (dry_run): the GPU of the memory and time estimate (default H100;
      models/train/accelerators.py lists them: H200, A100-80GB, L40S, ...)
  --init_from=PATH (train): start from these weights (a checkpoint or run folder, a state dict
      file, a reference weights.pth) instead of the random initialisation
  e.g. ./tools/bazel run //experiments:nano -- train nano_quickstart local --trainer.max_steps=100
       ./tools/bazel run //experiments:base -- launch base_lr1e-4 slurm --launch.num_gpus=8 \\
           --trainer.callbacks.wandb.project=2026_11_25_my_study
  dry_run prints every key an override can set."""


HELP_HINT = "usage: <experiment> SUBCOMMAND RUN_NAME CLUSTER [--key=value ...] (--help says more)"


def _max_steps(current: Any, raw: str) -> Any:
    steps = ov.parse_value(raw, int, None)
    if steps < 1:
        raise ValueError(raw)
    return dataclasses.replace(current, value=steps, unit="steps")


ALIASES: dict[str, ov.Alias] = {
    "trainer.max_steps": ov.Alias(
        "trainer.max_duration", _max_steps, "a whole number of optimizer steps (>= 1)"
    ),
    "trainer.callbacks.wandb.project": ov.Alias(
        "trainer.run.project", help="the W&B project, also the run folder's parent"
    ),
    # The callbacks' configs live under trainer.callbacks.<name> (so --trainer.callbacks.
    # wandb.mode is a real path); the paths they had before keep working.
    "trainer.wandb.": ov.Alias("trainer.callbacks.wandb."),
    "trainer.checkpointer.": ov.Alias("trainer.callbacks.checkpointer."),
    "trainer.progress.": ov.Alias("trainer.callbacks.progress."),
    "seed": ov.Alias("trainer.seed", help="the model initialisation seed"),
    # The global batch is the data loader's field alone (the train module is built for it);
    # the train module's old path keeps working.
    "train_module.global_batch_size": ov.Alias(
        "data_loader.global_batch_size", help="samples per optimizer step over all ranks"
    ),
}
"""The guide's names for fields whose real place is an implementation detail."""

MODEL_SIZE = "model_size"
ESTIMATE_GPU = "estimate.gpu"

OPTIONS = {
    MODEL_SIZE: "the variant's encoder and decoder at this size of models/latent_mim/sizes.py "
    "(widths, depths, heads, mlp ratio), its config classes kept, e.g. --model_size=nano",
    ESTIMATE_GPU: "dry_run only: the accelerator (models/train/accelerators.py) its memory and "
    "time estimate is for, e.g. --estimate.gpu=H200; changes no config",
}
"""Keys that are no config path: what each sets is described here (see the module docstring)."""

REFUSED = {
    "model": (
        "the model is changed by a variant file, not a flag, so that the config test and the "
        "hygiene test cover it. Create one with: ./tools/bazel run //tools:new_experiment -- "
        '--name base_<component>_<change> --hypothesis "..." (to run a variant at another '
        "size: --model_size=nano)"
    ),
    "experiment": "the experiment is the Bazel target you run",
    "run_name": "the run name is the RUN_NAME argument",
    "cluster": "the cluster is the CLUSTER argument",
}

IDENTITY_KEYS = {
    "trainer.run.": "the run folder is named by RUN_NAME, the cluster's run root and "
    "--trainer.callbacks.wandb.project (its parent folder and W&B project)",
    "trainer.wandb.name": "the W&B run is the RUN_NAME argument",
    "trainer.wandb.project": "the W&B project is set with --trainer.callbacks.wandb.project",
    "trainer.callbacks.wandb.name": "the W&B run is the RUN_NAME argument",
}
"""Typed keys that would give a run another identity than its positional arguments say
(identity.py): refused by the key the user typed, so the documented project flag, an
alias of trainer.run.project, still works."""

FLAGS = {"--resume": ("train", "launch"), "--untrained": ("evaluate", "visualize")}
"""Switches without a value, and the subcommands they belong to:
--resume     continue an existing run of the same setup (identity.py)
--untrained  evaluate or draw the untrained model of a run that has no checkpoint"""


class UsageError(ValueError):
    """The command line is wrong; exit status 2."""


@dataclasses.dataclass
class Invocation:
    """A parsed, resolved command line."""

    experiment: str
    subcommand: str
    run_name: str
    cluster: str
    overrides: list[ov.Override]
    applied: list[ov.AppliedOverride]
    common: CommonComponents
    config: ExperimentConfig
    builders: Builders
    warnings: list[str] = dataclasses.field(default_factory=list)
    resume: bool = False
    untrained: bool = False
    estimate_gpu: str | None = None


def resolve(builders: Builders, argv: Sequence[str], experiment: str) -> Invocation:
    """Parse and resolve a command line (everything except running the subcommand).

    Raises:
        UsageError, ov.OverrideError, naming.NamingError, clusters.UnknownClusterError:
            the command line is wrong (exit status 2).
    """
    if len(argv) < 3:
        raise UsageError(f"expected a subcommand, a run name and a cluster; {HELP_HINT}")
    subcommand, run_name, cluster, *rest = argv
    if subcommand not in SUBCOMMANDS:
        close = ov.closest_keys(subcommand, SUBCOMMANDS, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise UsageError(f"unknown subcommand {subcommand!r}.{hint} {HELP_HINT}")
    if run_name.startswith("-") or cluster.startswith("-"):
        raise UsageError(f"RUN_NAME and CLUSTER come before the overrides; {HELP_HINT}")
    for what, value in (
        ("run name", run_name),
        ("cluster", cluster),
        *(("argument", a) for a in rest),
    ):
        if problem := names.control_character_problem(what, value):
            raise UsageError(problem)
    for flag, owners in FLAGS.items():
        if flag in rest and subcommand not in owners:
            raise UsageError(f"{flag} belongs to {' and '.join(owners)}, not {subcommand}")
    resume, untrained = "--resume" in rest, "--untrained" in rest
    rest = [arg for arg in rest if arg not in FLAGS]
    if problem := names.run_name_problem(run_name):
        raise naming.NamingError(f"{problem}. Type for example: {experiment}")
    overrides = ov.parse_overrides(rest)
    estimate_gpu, overrides = _estimate_gpu(overrides, subcommand)
    for override in overrides:
        for key, reason in IDENTITY_KEYS.items():
            if override.key == key or (key.endswith(".") and override.key.startswith(key)):
                raise ov.OverrideError(f"{override.text} is not allowed: {reason}")
    common = builders.common_components_builder(experiment, subcommand, run_name, cluster)
    config, applied = apply_cli_overrides(build_config(builders, common), overrides)

    warnings: list[str] = []
    naming.validate_wandb_project(config.trainer.run.project)
    # A builder may set the W&B callback's own project (it wins over the run's, see
    # wandb_logger.py); it must be a dated project too. (TrainerConfig.wandb, which this
    # read before, moved into callbacks.)
    wandb = config.trainer.callbacks.get("wandb")
    if getattr(wandb, "project", None):
        naming.validate_wandb_project(wandb.project, "trainer.callbacks['wandb'].project")
    try:
        naming.validate_run_name(run_name, experiment)
    except naming.NamingError as error:
        # Local runs are scratch work (quickstart, my_run): a warning. Anything that goes
        # to a cluster must be findable from its variant: an error.
        if subcommand == "launch" or not common.is_local:
            raise
        warnings.append(str(error))
    return Invocation(
        experiment=experiment,
        subcommand=subcommand,
        run_name=run_name,
        cluster=cluster,
        overrides=overrides,
        applied=applied,
        common=common,
        config=config,
        builders=builders,
        warnings=warnings,
        resume=resume,
        untrained=untrained,
        estimate_gpu=estimate_gpu,
    )


def _estimate_gpu(
    overrides: list[ov.Override], subcommand: str
) -> tuple[str | None, list[ov.Override]]:
    """The accelerator `--estimate.gpu` names (its table name), and the other overrides."""
    chosen = [override for override in overrides if override.key == ESTIMATE_GPU]
    if not chosen:
        return None, overrides
    if subcommand != "dry_run":
        raise UsageError(f"--{ESTIMATE_GPU} belongs to dry_run, not {subcommand}")
    try:
        name = accelerators.get(chosen[0].value).name
    except ValueError as error:
        raise ov.OverrideError(f"{chosen[0].text}: {error}") from None
    return name, [override for override in overrides if override.key != ESTIMATE_GPU]


def apply_cli_overrides(
    config: ExperimentConfig, overrides: Sequence[ov.Override]
) -> tuple[ExperimentConfig, list[ov.AppliedOverride]]:
    """Overrides with the CLI's aliases, refusals and options: `--model_size` first (so an
    override of another section sees the resized model), then the others."""
    applied: list[ov.AppliedOverride] = []
    for override in overrides:  # at most one: parse_overrides refuses a key given twice
        if override.key == MODEL_SIZE:
            config, resize = _apply_model_size(config, override)
            applied.append(resize)
    others = [override for override in overrides if override.key != MODEL_SIZE]
    config, applied_others = ov.apply_overrides(config, others, ALIASES, REFUSED)
    return config, [*applied, *applied_others]


def _apply_model_size(
    config: ExperimentConfig, override: ov.Override
) -> tuple[ExperimentConfig, ov.AppliedOverride]:
    """`config` with its model at the size `override` names (see OPTIONS)."""
    name = override.value.strip()
    if name not in sizes.MODEL_SIZES:
        close = difflib.get_close_matches(name, list(sizes.MODEL_SIZES), n=1)
        hint = f"Did you mean --{MODEL_SIZE}={close[0]}? " if close else ""
        raise ov.OverrideError(
            f"{override.text}: unknown model size {name!r}. {hint}Valid sizes (models/"
            f"latent_mim/sizes.py): {', '.join(sizes.MODEL_SIZES)}"
        )
    try:
        model = sizes.resized(config.model, name)
    except AttributeError as error:  # a model config without an encoder and a decoder
        raise ov.OverrideError(
            f"{override.text}: {type(config.model).__name__} has no encoder and decoder to "
            f"resize ({error})"
        ) from None
    except (ValueError, TypeError) as error:  # a component's own check of the new shape
        raise ov.OverrideError(f"{override.text}: the resized model is rejected: {error}") from None
    resized_config = dataclasses.replace(config, model=model)
    resize = ov.AppliedOverride(override, "model", _shape(config.model), _shape(model))
    return resized_config, resize


def _shape(model: Any) -> str:
    """The encoder's and decoder's shape in one line (dry_run's overrides section)."""
    parts = []
    for part in ("encoder", "decoder"):
        component = getattr(model, part)
        parts.append(
            f"{part} {component.width} wide, {component.depth} deep, {component.num_heads} "
            f"heads, mlp x{component.mlp_ratio:g}"
        )
    return "; ".join(parts)
