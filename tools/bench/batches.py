"""Deterministic masked training batches for the benchmarks (v1 modalities, budgeted crops).

A batch is what the v1 data loader hands the training step: B instances cropped to
`patches_per_side` x `patches_per_side` patches of P pixels and to the most timesteps that fit
the 2250-token budget (models/data/crop.py), masked twice by `modality_cross_random`. The
values are random (normalized data is ~[0, 1]) and a fixed pattern of gaps makes the masks
realistic: Landsat and Sentinel-1 miss some months, CDL exists for half of the samples (it
covers only the USA), so the samples of one batch keep different numbers of visible tokens
and the encoder pads, as in real training.
"""

from __future__ import annotations

import dataclasses

import torch

from models.data import crop
from models.masking.masking import masking_config_from_name
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue, Sample

MISSING = modalities.MISSING_VALUE


@dataclasses.dataclass(frozen=True)
class BatchShape:
    """B instances of h x h patches of P pixels with T timesteps."""

    batch_size: int
    patch_size: int
    patches_per_side: int
    timesteps: int

    @property
    def pixels_per_side(self) -> int:
        return self.patch_size * self.patches_per_side


def budget_shape(
    batch_size: int,
    patch_size: int,
    patches_per_side: int,
    token_budget: int | None = crop.DEFAULT_TOKEN_BUDGET,
    names: tuple[str, ...] = modalities.TRAINING_MODALITIES,
    tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION,
) -> BatchShape:
    """The shape the loader would draw: the largest T within `token_budget` (at most 12)."""
    timesteps = crop.max_timesteps_within_budget(
        tokenization.specs(names), patches_per_side, token_budget, modalities.MAX_TIMESTEPS
    )
    return BatchShape(batch_size, patch_size, patches_per_side, timesteps)


def synthetic_sample(
    shape: BatchShape,
    seed: int = 0,
    names: tuple[str, ...] = modalities.TRAINING_MODALITIES,
) -> Sample:
    """Random normalized data with the gaps of the module docstring.

    Sample b misses Landsat at steps t with (t + b) % 3 == 2, Sentinel-1 at step b % T when b
    is odd, and CDL entirely when b is odd.
    """
    generator = torch.Generator().manual_seed(seed)
    size, steps = shape.pixels_per_side, shape.timesteps
    data = {}
    for name in modalities.canonical_order(names):
        spec = modalities.get(name)
        if spec.is_spatial:
            dims = (shape.batch_size, size, size, steps if spec.is_multitemporal else 1)
            data[name] = torch.rand(*dims, spec.num_bands, generator=generator)
        else:
            data[name] = torch.rand(shape.batch_size, spec.num_bands, generator=generator)
    for b in range(shape.batch_size):
        if "landsat" in data:
            for t in range(steps):
                if (t + b) % 3 == 2:
                    data["landsat"][b, :, :, t] = MISSING
        if b % 2 == 1:
            if "sentinel1" in data:
                data["sentinel1"][b, :, :, b % steps] = MISSING
            if "cdl" in data:
                data["cdl"][b] = MISSING
    months = (torch.arange(steps)[None, :] + torch.arange(shape.batch_size)[:, None]) % 12
    timestamps = torch.stack(
        [torch.full_like(months, 15), months, torch.full_like(months, 2021)], dim=-1
    )
    return Sample(data=data, timestamps=timestamps)


@dataclasses.dataclass
class TwoViews:
    """One step's input: the same instances masked twice."""

    patch_size: int
    view_a: MaskedSample
    view_b: MaskedSample

    @property
    def views(self) -> tuple[MaskedSample, MaskedSample]:
        return self.view_a, self.view_b


def masked_views(
    shape: BatchShape,
    seed: int = 0,
    masking: str = "modality_cross_random",
    names: tuple[str, ...] = modalities.TRAINING_MODALITIES,
) -> TwoViews:
    """`synthetic_sample` masked twice by `masking` (v1 ratios 0.5 / 0.5, maps decode-only)."""
    sample = synthetic_sample(shape, seed, names)
    strategy = masking_config_from_name(masking).build()
    generator = torch.Generator().manual_seed(seed + 1)
    view_a = strategy.apply(sample, shape.patch_size, generator)
    view_b = strategy.apply(sample, shape.patch_size, generator)
    return TwoViews(shape.patch_size, view_a, view_b)


def fully_visible(shape: BatchShape, seed: int = 0) -> MaskedSample:
    """`synthetic_sample` with every token that has data visible (embedding extraction)."""
    return MaskedSample.from_sample(synthetic_sample(shape, seed))


@dataclasses.dataclass(frozen=True)
class TokenCounts:
    """Tokens of one view, summed over the batch."""

    total: int
    encoder: int
    decoder: int
    missing: int


def token_counts(view: MaskedSample, patch_size: int) -> TokenCounts:
    """Counts the view's tokens by mask value (masks read at each patch's top-left pixel)."""
    counts = {value: 0 for value in MaskValue}
    for name, mask in view.masks.items():
        if modalities.get(name).is_spatial:
            mask = mask[:, ::patch_size, ::patch_size]
        for value in MaskValue:
            counts[value] += int((mask == value).sum())
    return TokenCounts(
        total=sum(counts.values()),
        encoder=counts[MaskValue.ONLINE_ENCODER],
        decoder=counts[MaskValue.DECODER],
        missing=counts[MaskValue.MISSING],
    )
