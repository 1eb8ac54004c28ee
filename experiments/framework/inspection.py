"""Shared by evaluate and visualize: a run's model at a checkpoint, and fixed inputs.

Inputs are drawn with their own seed (not the training loader's), so two checkpoints of
one run, or two runs of one study, are compared on exactly the same instances and masks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from experiments.framework import data, identity
from experiments.framework.experiment_config import ExperimentConfig


class NoCheckpointError(FileNotFoundError):
    """The requested checkpoint (or any checkpoint of the run) does not exist."""


def run_dir(config: ExperimentConfig) -> Path:
    return config.trainer.run.build().path


def existing_runs(config: ExperimentConfig) -> list[str]:
    """`project/run` of every run folder under the run root with a complete checkpoint
    (the ones `find_checkpoint` would take), each once."""
    from models.train import checkpoint

    root = Path(config.trainer.run.root)
    if not root.is_dir():
        return []
    return sorted(
        f"{folder.parent.parent.name}/{folder.parent.name}"
        for folder in root.glob("*/*/checkpoints")
        if checkpoint.latest_complete(folder) is not None
    )


def require_checkpoint(
    config: ExperimentConfig, explicit: str | None, untrained: bool, what: str
) -> Path | None:
    """The checkpoint to `what` (evaluate, visualize); refuses a run without one unless the
    user asked for the untrained model (`--untrained`), so a typo in a run name never scores
    a random initialisation with exit status 0."""
    found = find_checkpoint(config, explicit)
    if found is not None or untrained:
        return found
    runs = existing_runs(config)
    shown = ", ".join(runs[:8]) + (f" and {len(runs) - 8} more" if len(runs) > 8 else "")
    raise NoCheckpointError(
        f"{identity.run_label(config.trainer.run)} has no checkpoint ({run_dir(config)}); "
        f"runs with checkpoints: {shown or 'none'}. Give one "
        f"of them, or pass --untrained to {what} the untrained model"
    )


def find_checkpoint(config: ExperimentConfig, explicit: str | None) -> Path | None:
    """`explicit` (a checkpoint folder), else the run's newest complete checkpoint, else None."""
    from models.train import checkpoint

    if explicit:
        path = Path(explicit)
        if not (path / checkpoint.META_FILE).is_file():
            raise NoCheckpointError(
                f"{path} is not a checkpoint folder (no {checkpoint.META_FILE})"
            )
        return path
    return checkpoint.latest_complete(run_dir(config) / "checkpoints")


def load_model(config: ExperimentConfig, path: Path | None) -> tuple[torch.nn.Module, int]:
    """The model of `config` with the weights at `path` (untrained when None), and its step."""
    from models.train import checkpoint

    torch.manual_seed(config.seed)
    model = config.model.build()
    step = 0
    if path is not None:
        # checkpoint.load: weights only, sizes checked, errors that name the file.
        model.load_state_dict(checkpoint.load(path, parts=["model"])["model"])
        step = int(checkpoint.read_meta(path)["step"])
    return model.eval(), step


@dataclasses.dataclass(frozen=True)
class FixedInputs:
    """Which instances, at which size, masked with which seed."""

    indices: tuple[int, ...]
    patch_size: int
    patches_per_side: int
    seed: int


def fixed_batch(config: ExperimentConfig, dataset: Any, inputs: FixedInputs) -> Any:
    """A models.data `Batch` (two masked views) of `inputs` from `dataset`."""
    from models.data.collate import collate_two_views
    from models.data.dataset import GetItemArgs

    size = min(inputs.patches_per_side, dataset.image_size // inputs.patch_size)
    if size < 1:
        raise ValueError(
            f"patch size {inputs.patch_size} does not fit the {dataset.image_size}px samples"
        )
    items = [
        dataset[GetItemArgs(index, inputs.patch_size, size, None, inputs.seed + offset)]
        for offset, index in enumerate(inputs.indices)
    ]
    generator = torch.Generator().manual_seed(inputs.seed)
    return collate_two_views(items, config.data_loader.masking.build(), generator)


def pick_indices(num_available: int, count: int, seed: int) -> tuple[int, ...]:
    rng = np.random.default_rng(seed)
    count = min(count, num_available)
    return tuple(int(i) for i in np.sort(rng.choice(num_available, size=count, replace=False)))


def open_dataset(config: ExperimentConfig) -> Any:
    data.ensure_dataset(config.dataset.h5_dir)
    return config.dataset.build()
