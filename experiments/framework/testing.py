"""Helpers for experiment tests: tiny data, tiny models, tiny runs of a real experiment config.

A config test must exercise the experiment's own classes (its encoder subclass, its loss
choice, its modalities) but fit in seconds on 2 cores, so `tiny_config` keeps every class
and shrinks only sizes: models/train/tiny_run.py's tiny model size (width 32, depth 1) and
16-pixel, 3-timestep synthetic samples (the one tiny setup that models/ tests use too),
2-instance batches, a 64-token budget, no warmup, one step, no W&B. An in-loop evaluator keeps
running, on the tiny samples (`tiny_evaluator`): the recipe's held-out tiles would be
generated into the user's cache, which a Bazel test cannot write.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any

from experiments.framework.experiment_config import (
    Builders,
    CommonComponents,
    ExperimentConfig,
    build_config,
)
from models.latent_mim import sizes
from models.train.tiny_run import TINY_SIZE, TINY_TIMESTEPS, write_tiny_dataset

__all__ = [
    "experiment_config",
    "tiny_builders",
    "tiny_config",
    "tiny_evaluator",
    "tiny_model",
    "with_evaluator",
    "write_tiny_dataset",
]

TINY_BATCH = 2
TINY_TOKEN_BUDGET = 64


def tiny_model(model: Any) -> Any:
    """The same model config classes at tiny_run's TINY_SIZE (width 32, depth 1, 2 heads)."""
    return sizes.resized(model, TINY_SIZE)


def tiny_evaluator(h5_dir: str | Path, patch_size: int = 4, timesteps: int | None = None) -> Any:
    """models/eval's evaluator scoring the land cover of `h5_dir`'s own samples (half of them
    to fit, half to score), with a 1-NN and 2-epoch probes: seconds, and no file written.

    Args:
        patch_size: must divide the samples' size (4 for `write_tiny_dataset`'s 16 pixels).
        timesteps: how many leading timesteps to feed; None: TINY_TIMESTEPS.
    """
    from models.eval.evaluator import EvaluatorConfig
    from models.eval.knn import KnnConfig
    from models.eval.landcover import LandCoverTaskConfig
    from models.eval.linear_probe import LinearProbeConfig

    steps = tuple(range(TINY_TIMESTEPS if timesteps is None else timesteps))
    task = LandCoverTaskConfig(h5_dir=str(h5_dir), patch_size=patch_size, timesteps=steps)
    return EvaluatorConfig(
        tasks=(task,),
        knn=KnnConfig(k=1),
        linear_probe=LinearProbeConfig(epochs=2, batch_size=2),
        batch_size=2,
    )


def with_evaluator(trainer: Any, evaluator: Any) -> Any:
    """`trainer` (a TrainerConfig) whose configured evaluator callbacks score with `evaluator`."""
    callbacks = {
        name: dataclasses.replace(callback, evaluator=evaluator)
        if hasattr(callback, "evaluator")
        else callback
        for name, callback in trainer.callbacks.items()
    }
    return dataclasses.replace(trainer, callbacks=callbacks)


def tiny_config(config: ExperimentConfig, h5_dir: str | Path, run_root: str | Path) -> Any:
    """`config` shrunk to one CPU step of 2 instances on `h5_dir`, writing under `run_root`."""
    from models.train.trainer import Duration

    data_loader = dataclasses.replace(
        config.data_loader,
        global_batch_size=TINY_BATCH,
        num_workers=0,
        prefetch_factor=None,
        token_budget=TINY_TOKEN_BUDGET,
    )
    # No warmup: at step 1 of 8000 the lr is 1.25e-8 and no weight visibly moves.
    train_module = dataclasses.replace(
        config.train_module,
        microbatch_size=TINY_BATCH,
        scheduler=dataclasses.replace(config.train_module.scheduler, warmup_steps=0),
    )
    scored = with_evaluator(config.trainer, tiny_evaluator(h5_dir))
    trainer = dataclasses.replace(
        scored,
        run=dataclasses.replace(config.trainer.run, root=str(run_root)),
        max_duration=Duration.steps(1),
        callbacks={
            **scored.callbacks,
            "wandb": dataclasses.replace(config.trainer.callbacks["wandb"], enabled=False),
            "progress": dataclasses.replace(config.trainer.callbacks["progress"], enabled=False),
        },
    )
    return dataclasses.replace(
        config,
        model=tiny_model(config.model),
        dataset=dataclasses.replace(config.dataset, h5_dir=str(h5_dir)),
        data_loader=data_loader,
        train_module=train_module,
        trainer=trainer,
    )


def tiny_builders(module: types.ModuleType, h5_dir: str | Path) -> Builders:
    """`module`'s builders with every section shrunk by `tiny_config` (runs under the cluster's
    run root), so a test can drive the real command line (`cli.run`) through one tiny step."""
    recipe = Builders.from_module(module)

    def section(name: str) -> Any:
        def build(common: CommonComponents) -> Any:
            return getattr(tiny_config(build_config(recipe, common), h5_dir, common.run_root), name)

        return build

    return Builders(
        common_components_builder=recipe.common_components_builder,
        model_config_builder=section("model"),
        dataset_config_builder=section("dataset"),
        dataloader_config_builder=section("data_loader"),
        train_module_config_builder=section("train_module"),
        trainer_config_builder=section("trainer"),
        visualize_config_builder=section("visualize"),
    )


def experiment_config(
    module: types.ModuleType,
    cluster: str = "local",
    run_name: str | None = None,
    subcommand: str = "dry_run",
) -> tuple[ExperimentConfig, CommonComponents]:
    """An experiment module's resolved config (no overrides) and its CommonComponents."""
    name = module.__name__.rpartition(".")[2]
    builders = Builders.from_module(module)
    common = builders.common_components_builder(name, subcommand, run_name or name, cluster)
    return build_config(builders, common), common
