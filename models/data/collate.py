"""Stacking instances into a `Sample` and masking it into two views, inside a loader worker.

A batch of the contrastive latent-MIM objective is `Batch(patch_size, view_a, view_b)`: the
same stacked instances masked twice, independently, by one masking strategy (the reference's
`collate_double_masked_batched`). Both views share the data tensors; only the masks differ,
so a masking strategy must not modify `sample.data` in place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from models.data.dataset import DatasetItem
from models.modalities import modalities
from models.modalities.samples import MaskedSample, Sample


class MaskingStrategy(Protocol):
    """What the collate needs of a masking strategy (models.masking implements it)."""

    def apply(self, sample: Sample, patch_size: int, generator: torch.Generator) -> MaskedSample:
        """Masks per band set `[B, H, W, T, S]`, constant inside each patch, MISSING where the
        band set has no data."""
        ...


@dataclasses.dataclass
class Batch:
    """One training step's input for this rank.

    Attributes:
        patch_size: P, the same for every instance (and every rank) of the step.
        view_a, view_b: two independent maskings of the same instances.
        skipped: files replaced by other samples while building the batch
            (DatasetConfig.skip_bad_samples); the loader counts and logs them.
    """

    patch_size: int
    view_a: MaskedSample
    view_b: MaskedSample
    skipped: tuple[str, ...] = ()

    @property
    def batch_size(self) -> int:
        return self.view_a.batch_size

    def pin_memory(self) -> Batch:
        """Called by `DataLoader(pin_memory=True)` for a custom batch type."""
        return dataclasses.replace(
            self, view_a=self.view_a.pin_memory(), view_b=self.view_b.pin_memory()
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return dataclasses.replace(
            self,
            view_a=self.view_a.to(device, non_blocking=non_blocking),
            view_b=self.view_b.to(device, non_blocking=non_blocking),
        )


def stack_items(items: Sequence[DatasetItem]) -> Sample:
    """The instances as one `Sample`: spatial `[B, H, W, T, C]`, latlon `[B, 2]`.

    Every instance must have the same modalities and shapes (the loader asks for the same
    patch size, window and timestep count across a batch).
    """
    if not items:
        raise ValueError("cannot collate an empty batch")
    names = modalities.canonical_order(items[0].data)
    data = {}
    for name in names:
        shapes = {item.data[name].shape for item in items}
        if len(shapes) != 1:
            raise ValueError(f"instances of one batch differ in {name} shape: {sorted(shapes)}")
        data[name] = torch.from_numpy(np.stack([item.data[name] for item in items]))
    timestamps = torch.from_numpy(np.stack([item.timestamps for item in items]).astype(np.int64))
    return Sample(data=data, timestamps=timestamps)


def collate_two_views(
    items: Sequence[DatasetItem],
    masking: MaskingStrategy,
    generator: torch.Generator,
) -> Batch:
    """Stacks `items` and masks the result twice with `generator` (view a, then view b)."""
    patch_sizes = {item.patch_size for item in items}
    if len(patch_sizes) != 1:
        raise ValueError(f"instances of one batch have different patch sizes {sorted(patch_sizes)}")
    patch_size = patch_sizes.pop()
    sample = stack_items(items)
    apply_views = getattr(masking, "apply_views", None)
    if apply_views is not None:
        # The same two views as two `apply` calls; the missing-data masks are computed once.
        view_a, view_b = apply_views(sample, patch_size, generator, num_views=2)
    else:
        view_a = masking.apply(sample, patch_size, generator)
        view_b = masking.apply(sample, patch_size, generator)
    skipped = tuple(path for item in items for path in item.skipped)
    return Batch(patch_size=patch_size, view_a=view_a, view_b=view_b, skipped=skipped)
