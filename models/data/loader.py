"""The training data loader: deterministic, resumable, data-parallel batches of two views.

Each step's batch is built whole inside one worker: read and crop the rank's instances
(models.data.dataset), stack them, mask them twice (models.data.collate). What goes into
step b of epoch e comes from `GlobalBatchPlan.spec(e, b)` (models.data.sampler), so the
batches are the same for any number of workers, and resuming from `state_dict()` continues
at the exact next step. Torch's DataLoader returns a map-style dataset's items in sampler
order, whichever worker built them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import torch

from models.config.configurable import Configurable
from models.data.collate import Batch, MaskingStrategy, collate_two_views
from models.data.crop import DEFAULT_TOKEN_BUDGET
from models.data.dataset import EarthDataset, GetItemArgs
from models.data.sampler import GlobalBatchPlan

logger = logging.getLogger(__name__)

MULTIPROCESSING_CONTEXTS = (None, "fork", "spawn", "forkserver")


@dataclasses.dataclass(kw_only=True)
class DataLoaderConfig(Configurable["EarthDataLoader"]):
    """Configuration of `EarthDataLoader`.

    Attributes:
        global_batch_size: instances per step over all data-parallel ranks.
        num_workers: loader processes per rank (0 = build batches in the main process).
        seed: fixes the order, the patch sizes, the crops and the masks.
        min_patch_size, max_patch_size: P is drawn uniformly from this range per step
            (reference: 1..8).
        patches_per_side: h = w is drawn uniformly per step from the values that fit the
            drawn P (window inside the samples, one timestep inside the budget)
            (reference: 1..12).
        token_budget: most tokens per instance (reference: 2250); None keeps all steps.
        shuffle: a new permutation of the dataset each epoch.
        prefetch_factor: batches each worker prepares ahead (None: torch's default of 2).
        pin_memory: page-lock batches for faster host-to-GPU copies.
        multiprocessing_context: start method of the workers (None: the platform's).
    """

    global_batch_size: int
    num_workers: int = 0
    seed: int = 0
    min_patch_size: int = 1
    max_patch_size: int = 8
    patches_per_side: tuple[int, ...] = tuple(range(1, 13))
    token_budget: int | None = DEFAULT_TOKEN_BUDGET
    shuffle: bool = True
    prefetch_factor: int | None = None
    pin_memory: bool = False
    multiprocessing_context: str | None = None

    def __post_init__(self) -> None:
        self.patches_per_side = tuple(self.patches_per_side)
        if self.global_batch_size < 1:
            raise ValueError(
                f"DataLoaderConfig.global_batch_size is {self.global_batch_size}; must be >= 1"
            )
        if self.num_workers < 0:
            raise ValueError(f"DataLoaderConfig.num_workers is {self.num_workers}; must be >= 0")
        if not 1 <= self.min_patch_size <= self.max_patch_size:
            raise ValueError(
                f"DataLoaderConfig.min_patch_size {self.min_patch_size} and max_patch_size "
                f"{self.max_patch_size} must satisfy 1 <= min <= max"
            )
        if not self.patches_per_side or min(self.patches_per_side) < 1:
            raise ValueError(
                f"DataLoaderConfig.patches_per_side is {self.patches_per_side}; need values >= 1"
            )
        if self.token_budget is not None and self.token_budget < 1:
            raise ValueError(
                f"DataLoaderConfig.token_budget is {self.token_budget}; must be >= 1 or None"
            )
        if self.prefetch_factor is not None and (self.prefetch_factor < 1 or self.num_workers == 0):
            raise ValueError(
                f"DataLoaderConfig.prefetch_factor is {self.prefetch_factor}; it needs num_workers "
                "> 0 and a value >= 1"
            )
        if self.multiprocessing_context not in MULTIPROCESSING_CONTEXTS:
            raise ValueError(
                f"DataLoaderConfig.multiprocessing_context is {self.multiprocessing_context!r}; "
                f"allowed: {list(MULTIPROCESSING_CONTEXTS)}"
            )

    def build(
        self,
        dataset: EarthDataset,
        masking_strategy: MaskingStrategy,
        rank: int = 0,
        world_size: int = 1,
    ) -> EarthDataLoader:
        return EarthDataLoader(self, dataset, masking_strategy, rank=rank, world_size=world_size)


def allowed_patches_per_side(
    dataset: EarthDataset, patch_size: int, candidates: tuple[int, ...], token_budget: int | None
) -> tuple[int, ...]:
    """The candidates whose window fits the samples and whose one-step instance fits the budget."""
    allowed = []
    for value in candidates:
        if value * patch_size > dataset.image_size:
            continue
        static, per_step = dataset.token_counts(value)
        if token_budget is not None and static + per_step > token_budget:
            continue
        allowed.append(value)
    return tuple(allowed)


class _StepBuilder(torch.utils.data.Dataset):
    """Maps (epoch, batch index) to this rank's finished `Batch`; runs inside workers."""

    def __init__(
        self,
        dataset: EarthDataset,
        plan: GlobalBatchPlan,
        masking: MaskingStrategy,
        token_budget: int | None,
    ) -> None:
        self.dataset = dataset
        self.plan = plan
        self.masking = masking
        self.token_budget = token_budget

    def __getitem__(self, key: tuple[int, int]) -> Batch:
        spec = self.plan.spec(*key)
        items = [
            self.dataset[
                GetItemArgs(index, spec.patch_size, spec.patches_per_side, self.token_budget, seed)
            ]
            for index, seed in zip(spec.dataset_indices, spec.crop_seeds, strict=True)
        ]
        generator = torch.Generator().manual_seed(spec.masking_seed)
        return collate_two_views(items, self.masking, generator)


def _identity(batch: Batch) -> Batch:
    return batch


def _init_worker(worker_id: int) -> None:
    # Each worker builds whole batches; intra-op threads would only oversubscribe the cores.
    torch.set_num_threads(1)


class EarthDataLoader:
    """Iterates this rank's batches of the current epoch from the current position.

    Iterating to the end of an epoch moves to the next one; `state_dict()` taken after k
    batches of an epoch and loaded into a fresh loader makes it yield batch k next.
    """

    def __init__(
        self,
        config: DataLoaderConfig,
        dataset: EarthDataset,
        masking_strategy: MaskingStrategy,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.masking_strategy = masking_strategy
        choices = {
            patch_size: allowed_patches_per_side(
                dataset, patch_size, config.patches_per_side, config.token_budget
            )
            for patch_size in range(config.min_patch_size, config.max_patch_size + 1)
        }
        unfit = [p for p, values in choices.items() if not values]
        if unfit:
            raise ValueError(
                f"no DataLoaderConfig.patches_per_side value {config.patches_per_side} fits patch "
                f"sizes {unfit} with {dataset.image_size}px samples and token_budget "
                f"{config.token_budget}"
            )
        self.patches_per_side_by_patch_size = choices
        self.plan = GlobalBatchPlan(
            num_samples=len(dataset),
            global_batch_size=config.global_batch_size,
            seed=config.seed,
            patches_per_side_by_patch_size=choices,
            rank=rank,
            world_size=world_size,
            shuffle=config.shuffle,
        )
        self.epoch = 1
        self.batches_consumed = 0
        self.num_skipped = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.plan.batches_per_epoch

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[Batch]:
        epoch, start = self.epoch, self.batches_consumed
        keys = [(epoch, index) for index in range(start, self.batches_per_epoch)]
        workers = self.config.num_workers
        loader = torch.utils.data.DataLoader(
            _StepBuilder(self.dataset, self.plan, self.masking_strategy, self.config.token_budget),
            batch_size=None,
            sampler=keys,
            num_workers=workers,
            collate_fn=_identity,
            pin_memory=self.config.pin_memory,
            prefetch_factor=self.config.prefetch_factor if workers else None,
            multiprocessing_context=self.config.multiprocessing_context if workers else None,
            worker_init_fn=_init_worker if workers else None,
        )
        for batch in loader:
            self.batches_consumed += 1
            if batch.skipped:
                self.num_skipped += len(batch.skipped)
                logger.warning(
                    "epoch %d batch %d: replaced %d bad samples (%d so far): %s",
                    epoch,
                    self.batches_consumed - 1,
                    len(batch.skipped),
                    self.num_skipped,
                    ", ".join(batch.skipped),
                )
            yield batch
        self.epoch += 1
        self.batches_consumed = 0

    def state_dict(self) -> dict[str, Any]:
        """The position (epoch, batches consumed) and what it is relative to."""
        return {
            "epoch": self.epoch,
            "batches_consumed": self.batches_consumed,
            "seed": self.config.seed,
            "global_batch_size": self.config.global_batch_size,
            "num_samples": len(self.dataset),
            "num_skipped": self.num_skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues at `state`'s position; the order must be the same one (seed, sizes)."""
        for key in ("seed", "global_batch_size", "num_samples"):
            mine = self.state_dict()[key]
            if state[key] != mine:
                raise ValueError(
                    f"data loader state has {key}={state[key]}, this loader has {mine}: the "
                    "saved position would point into a different order"
                )
        if not 0 <= state["batches_consumed"] <= self.batches_per_epoch or state["epoch"] < 1:
            raise ValueError(
                f"data loader state epoch={state['epoch']} batches_consumed="
                f"{state['batches_consumed']} is outside 1.. and 0..{self.batches_per_epoch}"
            )
        self.epoch = int(state["epoch"])
        self.batches_consumed = int(state["batches_consumed"])
        self.num_skipped = int(state.get("num_skipped", 0))
