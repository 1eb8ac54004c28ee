"""The global batch plan: which samples, patch size and window size make up each step.

Everything about batch b of epoch e is a pure function of (seed, e, b), never of the rank,
the worker or the order in which workers run:
    order        a permutation of the dataset seeded by (seed, e); the tail that does not
                 fill a global batch is dropped (reference: drop_last)
    patch size   uniform over min..max_patch_size, seeded by (seed, e, b): every rank of
                 the step gets the same one
    patches/side uniform over the values that fit that patch size (window within the
                 samples, one timestep within the token budget), same seed
    samples      rank r of R takes positions r, r + R, r + 2R, ... of the global batch
                 (the reference's strided split), so the ranks cover the batch exactly
    crop seeds   one per global position, so a sample's window does not depend on R
    mask seed    one per (step, rank)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

_CROP_STREAM, _MASK_STREAM, _PLAN_STREAM = 1, 2, 3


def _seed(*key: int) -> int:
    """A 63-bit seed derived from a tuple of non-negative ints (stable across platforms)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """What one rank must load for one step.

    Attributes:
        epoch: 1-based epoch.
        batch_index: step within the epoch, 0-based.
        patch_size: P for the whole global batch.
        patches_per_side: h = w for the whole global batch.
        dataset_indices: this rank's dataset positions, in order.
        crop_seeds: one per entry of `dataset_indices`.
        masking_seed: seeds the masking generator of this rank's batch.
    """

    epoch: int
    batch_index: int
    patch_size: int
    patches_per_side: int
    dataset_indices: tuple[int, ...]
    crop_seeds: tuple[int, ...]
    masking_seed: int


class GlobalBatchPlan:
    """Deterministic per-step batch specs for one rank; see the module docstring.

    Args:
        num_samples: dataset length.
        global_batch_size: instances per step over all ranks.
        seed: the data seed.
        patches_per_side_by_patch_size: for each allowed patch size, the patches-per-side
            values allowed with it (non-empty).
        rank, world_size: this process's place in data parallelism.
        shuffle: permute the dataset each epoch (else dataset order).
    """

    def __init__(
        self,
        num_samples: int,
        global_batch_size: int,
        seed: int,
        patches_per_side_by_patch_size: Mapping[int, Sequence[int]],
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..world_size-1 (world_size {world_size})")
        if global_batch_size % world_size:
            raise ValueError(
                f"global_batch_size {global_batch_size} is not divisible by world_size {world_size}"
            )
        if num_samples < global_batch_size:
            raise ValueError(
                f"the dataset has {num_samples} samples, fewer than one global batch of "
                f"{global_batch_size}"
            )
        empty = [p for p, choices in patches_per_side_by_patch_size.items() if not choices]
        if empty or not patches_per_side_by_patch_size:
            raise ValueError(f"no patches-per-side value fits patch sizes {empty}")
        self.num_samples = num_samples
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.patch_sizes = tuple(sorted(patches_per_side_by_patch_size))
        self.choices = {p: tuple(patches_per_side_by_patch_size[p]) for p in self.patch_sizes}
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self._order_epoch: int | None = None
        self._order: np.ndarray | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.num_samples // self.global_batch_size

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Dataset positions of the epoch, truncated to whole global batches."""
        if self._order_epoch != epoch:
            order = np.arange(self.num_samples, dtype=np.int64)
            if self.shuffle:
                np.random.default_rng([self.seed, epoch]).shuffle(order)
            self._order = order[: self.batches_per_epoch * self.global_batch_size]
            self._order_epoch = epoch
        assert self._order is not None
        return self._order

    def global_batch(self, epoch: int, batch_index: int) -> np.ndarray:
        """All dataset positions of one step, over every rank."""
        if not 0 <= batch_index < self.batches_per_epoch:
            raise IndexError(f"batch {batch_index} outside 0..{self.batches_per_epoch - 1}")
        start = batch_index * self.global_batch_size
        return self.epoch_order(epoch)[start : start + self.global_batch_size]

    def spec(self, epoch: int, batch_index: int) -> BatchSpec:
        positions = self.global_batch(epoch, batch_index)
        rng = np.random.default_rng([self.seed, epoch, batch_index, _PLAN_STREAM])
        patch_size = int(self.patch_sizes[int(rng.integers(len(self.patch_sizes)))])
        choices = self.choices[patch_size]
        patches_per_side = int(choices[int(rng.integers(len(choices)))])
        mine = range(self.rank, self.global_batch_size, self.world_size)
        return BatchSpec(
            epoch=epoch,
            batch_index=batch_index,
            patch_size=patch_size,
            patches_per_side=patches_per_side,
            dataset_indices=tuple(int(positions[i]) for i in mine),
            crop_seeds=tuple(_seed(self.seed, epoch, batch_index, i, _CROP_STREAM) for i in mine),
            masking_seed=_seed(self.seed, epoch, batch_index, self.rank, _MASK_STREAM),
        )
