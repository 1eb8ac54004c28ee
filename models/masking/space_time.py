"""Per-sample choice between two structured maskings: `space_time` and `random_space`.

The reference flips one fair coin per batch and masks the whole batch with the winner;
we flip one per sample (same 50/50 share, and a batch mixes both structures). Both
candidate masks are drawn for every sample, so the generator's stream does not depend
on the coin flips and the masks stay a function of the seed.
- space_time: space masking or time masking. A sample with fewer than `min_timesteps`
  (3, as the reference) timesteps with data always gets space masking, since time
  masking cannot split fewer timesteps into encoder, decoder and target sets.
- random_space: random masking or space masking.
"""

from __future__ import annotations

import dataclasses

import torch

from models.masking import base
from models.masking.random_space_time import (
    RandomMasking,
    SpaceMasking,
    TimeMasking,
    TimeMaskingConfig,
)

SPACE_PROBABILITY = 0.5
"""The reference's fair coin: space masking when `np.random.random() < 0.5`."""


def timesteps_with_data(
    strategy: base.MaskingStrategy, present: dict[str, torch.Tensor]
) -> torch.Tensor:
    """long `[B]`: per sample, the timesteps where any space-time modality has a token."""
    first = next(iter(present.values()))
    steps = torch.zeros(first.shape[0], dtype=torch.long, device=first.device)
    spacetime = [name for name in present if strategy.spec(name).is_spacetime]
    if spacetime:
        # [B, h, w, T, S] -> [B, T] per modality, then the union over modalities.
        per_step = torch.stack([present[name].any(dim=(1, 2, 4)) for name in spacetime])
        steps = per_step.any(0).sum(-1)
    return steps


def choose_per_sample(
    use_second: torch.Tensor, first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Per modality, sample b's mask from `second` where `use_second[b]`, else from `first`."""
    return {
        name: torch.where(base.per_sample(use_second, mask), second[name], mask)
        for name, mask in first.items()
    }


@dataclasses.dataclass(kw_only=True)
class SpaceTimeMaskingConfig(TimeMaskingConfig):
    """Space or time masking, chosen per sample (reference `space_time`).

    Attributes:
        min_timesteps: fewest timesteps with data for a sample to be time-masked.
    """

    name = "space_time"

    def build(self) -> SpaceTimeMasking:
        return SpaceTimeMasking(self)


class SpaceTimeMasking(base.MaskingStrategy):
    """See the module docstring."""

    config: SpaceTimeMaskingConfig
    # The two strategies a sample's coin chooses between; a subclass swaps in others that
    # read the same config (modality_cross_axes: the modality-cross pair).
    space_class: type[base.MaskingStrategy] = SpaceMasking
    time_class: type[base.MaskingStrategy] = TimeMasking

    def __init__(self, config: SpaceTimeMaskingConfig) -> None:
        super().__init__(config)
        self.space = self.space_class(config)
        self.time = self.time_class(config)

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        if not present:
            return {}
        first = next(iter(present.values()))
        coin = base.uniform((first.shape[0],), generator, first.device)
        space = self.space.token_masks(present, generator)
        time = self.time.token_masks(present, generator)
        enough_steps = timesteps_with_data(self, present) >= self.config.min_timesteps
        return choose_per_sample((coin >= SPACE_PROBABILITY) & enough_steps, space, time)


@dataclasses.dataclass(kw_only=True)
class RandomSpaceMaskingConfig(base.MaskingConfig):
    """Random or space masking, chosen per sample (reference `random_space`)."""

    name = "random_space"

    def build(self) -> RandomSpaceMasking:
        return RandomSpaceMasking(self)


class RandomSpaceMasking(base.MaskingStrategy):
    """See the module docstring."""

    def __init__(self, config: RandomSpaceMaskingConfig) -> None:
        super().__init__(config)
        self.random = RandomMasking(config)
        self.space = SpaceMasking(config)

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        if not present:
            return {}
        first = next(iter(present.values()))
        coin = base.uniform((first.shape[0],), generator, first.device)
        space = self.space.token_masks(present, generator)
        random = self.random.token_masks(present, generator)
        return choose_per_sample(coin >= SPACE_PROBABILITY, space, random)
