"""`random_fixed_modality`: random masking, then fixed modalities decoded wholly and,
optionally, some modalities dropped per sample.

1. Random masking (`random`).
2. Every token with data of a `decoded_modalities` modality is DECODER: the model always
   predicts them (e.g. maps) from the rest.
3. Per sample, among the `randomize_missing_modalities` whose every token has data, if
   there are k >= 2, a uniformly random number in [0, k - 1] of them, chosen at random,
   are dropped: all their tokens become MISSING, so neither encoder nor target sees them.
   At least one stays, so the sample keeps data at every patch.
Step 3 is the one place where MISSING marks tokens that have data: it is the point of the
strategy (the model learns to work without some modalities). A sample left without an
encoder or decoder token is re-drawn by random masking (base rule), dropped modalities
included.

Differences from the reference, on purpose: "every token has data" is judged per token
(a patch with any pixel of data), the reference checks every pixel; a decoded modality
keeps MISSING where it has no data (the reference's helper already does this).
"""

from __future__ import annotations

import dataclasses

import torch

from models.masking import base
from models.masking.base import DECODER, MISSING
from models.masking.random_space_time import RandomMasking


def check_modality_tuple(owner: str, field: str, value: object) -> tuple[str, ...]:
    """`value` as a tuple of known modality names, or a ValueError naming `owner.field`."""
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise ValueError(f"{owner}.{field} must be a sequence of modality names; got {value!r}")
    names = tuple(value)
    base.check_modality_names(owner, field, names)
    return names


def random_subset(
    eligible: torch.Tensor, low: torch.Tensor, high: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Per row, a uniformly random count in [low, high], then that many random eligible
    columns (all of them when fewer are eligible).

    Args:
        eligible: bool `[B, M]`.
        low, high: long `[B]`, with high >= low.

    Returns:
        bool `[B, M]`, the chosen columns.
    """
    count = base.uniform_int(low, high, generator)
    ranks = base.random_ranks(eligible, generator)
    return eligible & (ranks < count.unsqueeze(-1))


@dataclasses.dataclass(kw_only=True)
class RandomFixedModalityMaskingConfig(base.MaskingConfig):
    """Random masking with always-decoded and randomly dropped modalities
    (reference `random_fixed_modality`).

    Attributes:
        decoded_modalities: modalities whose every token with data is DECODER (required,
            as in the reference).
        randomize_missing_modalities: modalities of which, per sample, a random subset
            (never all) is dropped; empty (the default) drops nothing.
    """

    name = "random_fixed_modality"

    decoded_modalities: tuple[str, ...]
    randomize_missing_modalities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        self.decoded_modalities = check_modality_tuple(
            owner, "decoded_modalities", self.decoded_modalities
        )
        self.randomize_missing_modalities = check_modality_tuple(
            owner, "randomize_missing_modalities", self.randomize_missing_modalities
        )

    def build(self) -> RandomFixedModalityMasking:
        return RandomFixedModalityMasking(self)


class RandomFixedModalityMasking(RandomMasking):
    """See the module docstring."""

    config: RandomFixedModalityMaskingConfig

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        masks = super().token_masks(present, generator)
        for name in self.config.decoded_modalities:
            if name in masks:
                masks[name] = masks[name].masked_fill(present[name], DECODER)
        droppable = [name for name in self.config.randomize_missing_modalities if name in masks]
        if not droppable:
            return masks
        batch = masks[droppable[0]].shape[0]
        complete = torch.stack(
            [present[name].reshape(batch, -1).all(-1) for name in droppable], dim=-1
        )  # [B, M]: the modality has data at every token
        n_complete = complete.sum(-1)
        # Fewer than two complete modalities: nothing is dropped (count range [0, 0]).
        high = torch.where(n_complete >= 2, n_complete - 1, 0)
        dropped = random_subset(complete, torch.zeros_like(high), high, generator)
        for k, name in enumerate(droppable):
            masks[name] = masks[name].masked_fill(
                base.per_sample(dropped[:, k], masks[name]), MISSING
            )
        return masks
