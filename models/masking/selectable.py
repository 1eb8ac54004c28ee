"""`selectable_modality` and `selectable_random_range_modality`: random (or random-range)
masking, then per sample a random handful of listed modalities taken out of the encoder's
view entirely.

"Selectable" is the reference's word for modalities a recipe lists as candidates:
1. Stage 1: `random` (selectable_modality) or `random_range`
   (selectable_random_range_modality) masking.
2. Per sample, a count is drawn uniformly in [0, max_to_mask] and that many modalities
   (all of them if fewer) are chosen at random from `decodable_modalities +
   fully_mask_modalities`. A chosen decodable modality has every token with data set to
   DECODER (predicted wholly from the others); a chosen fully-masked one has every token
   set to MISSING (dropped: neither encoder nor target sees it).
Listed modalities absent from the batch are chosen like the others and then do nothing,
as in the reference. MISSING over data (step 2) is the point of the strategy; a sample
left without an encoder or decoder token is re-drawn by random masking (base rule).

Differences from the reference, on purpose: it chooses once per batch for
selectable_modality (per sample for the random-range one); we choose per sample for both.
A chosen decodable modality keeps MISSING where it has no data; the reference overwrites
MISSING with DECODER, which would ask the decoder to predict tokens that do not exist.
"""

from __future__ import annotations

import dataclasses

import torch

from models.masking import base
from models.masking.base import DECODER, MISSING
from models.masking.fixed_modality import check_modality_tuple, random_subset
from models.masking.random_space_time import RandomMasking
from models.masking.ratio_schedules import RandomRangeMasking, RandomRangeMaskingConfig


@dataclasses.dataclass(kw_only=True)
class SelectableModalityMaskingConfig(base.MaskingConfig):
    """Random masking plus per-sample whole-modality masking (reference
    `selectable_modality`). All three fields are required, as in the reference.

    Attributes:
        decodable_modalities: candidates that, when chosen, are wholly DECODER.
        fully_mask_modalities: candidates that, when chosen, are dropped (MISSING).
        max_to_mask: most candidates chosen per sample (0 makes this `random`).
    """

    name = "selectable_modality"

    decodable_modalities: tuple[str, ...]
    fully_mask_modalities: tuple[str, ...]
    max_to_mask: int

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        self.decodable_modalities = check_modality_tuple(
            owner, "decodable_modalities", self.decodable_modalities
        )
        self.fully_mask_modalities = check_modality_tuple(
            owner, "fully_mask_modalities", self.fully_mask_modalities
        )
        both = sorted(set(self.decodable_modalities) & set(self.fully_mask_modalities))
        if both:
            raise ValueError(
                f"{owner}: {both} are in both decodable_modalities and fully_mask_modalities; "
                f"list each modality in one of them"
            )
        if not self.decodable_modalities and not self.fully_mask_modalities:
            raise ValueError(
                f"{owner}: decodable_modalities and fully_mask_modalities are both empty; "
                f"list the candidate modalities (or use the `random` strategy)"
            )
        if (
            isinstance(self.max_to_mask, bool)
            or not isinstance(self.max_to_mask, int)
            or self.max_to_mask < 0
        ):
            raise ValueError(f"{owner}.max_to_mask must be an int >= 0; got {self.max_to_mask!r}")

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.decodable_modalities + self.fully_mask_modalities

    def build(self) -> SelectableModalityMasking:
        return SelectableModalityMasking(self)


class SelectsModalities:
    """Step 2 of the module docstring, over the masks of the class's stage 1."""

    config: SelectableModalityMaskingConfig

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        masks = super().token_masks(present, generator)  # stage 1: the next class in order
        if not masks:
            return masks
        config = self.config
        first = next(iter(masks.values()))
        batch, device = first.shape[0], first.device
        candidates = torch.ones(batch, len(config.candidates), dtype=torch.bool, device=device)
        low = torch.zeros(batch, dtype=torch.long, device=device)
        chosen = random_subset(candidates, low, low + config.max_to_mask, generator)
        for k, name in enumerate(config.candidates):
            if name not in masks:
                continue
            mask = masks[name]
            picked = base.per_sample(chosen[:, k], mask)
            if name in config.decodable_modalities:
                masks[name] = mask.masked_fill(picked & present[name], DECODER)
            else:
                masks[name] = mask.masked_fill(picked, MISSING)
        return masks


class SelectableModalityMasking(SelectsModalities, RandomMasking):
    """See the module docstring."""


@dataclasses.dataclass(kw_only=True)
class SelectableRandomRangeModalityMaskingConfig(
    RandomRangeMaskingConfig, SelectableModalityMaskingConfig
):
    """Random-range masking plus per-sample whole-modality masking (reference
    `selectable_random_range_modality`); the fields of both parents."""

    name = "selectable_random_range_modality"

    def build(self) -> SelectableRandomRangeModalityMasking:
        return SelectableRandomRangeModalityMasking(self)


class SelectableRandomRangeModalityMasking(SelectsModalities, RandomRangeMasking):
    """See the module docstring."""
