"""Cross-modal masking over structured first stages: `modality_cross_space`,
`modality_cross_time` and `modality_cross_space_time`.

They are `modality_cross_random` (see `models.masking.modality_cross`) with another
stage 1: space masking, time masking, or, per sample, one of the two. Stage 2 (which band
sets a sample encodes and decodes) is the same, with one addition from the reference: a
modality the stage-1 structure cannot cover (under space masking lat/lon, which has no
patches; under time masking the static modalities, which have no timesteps) follows the
band-set choice wholly: every token of a band set chosen for encoding is ONLINE_ENCODER,
of one chosen for decoding DECODER, so it is predicted from, or predicts, the structured
modalities instead of being masked at random.

Defaults are the reference classes' (encoded and decoded band sets disjoint, at least two
encoded), with our usual decode-only maps.

Two differences from the reference, on purpose:
- its `modality_cross_time` runs space masking as stage 1 (the same as
  `modality_cross_space`); we run time masking, as its name and docstring say;
- its static-modality rule under time masking tests `is_spatial` (only lat/lon); we test
  "has no time axis", which is what its comment describes (static data is what time
  masking leaves random).
Like `space_time`, `modality_cross_space_time` chooses per sample rather than per batch.
"""

from __future__ import annotations

import dataclasses

from models.masking.modality_cross import (
    ModalityCrossRandomMasking,
    ModalityCrossRandomMaskingConfig,
)
from models.masking.random_space_time import SpaceMasking, TimeMasking, TimeMaskingConfig
from models.masking.space_time import SpaceTimeMasking


@dataclasses.dataclass(kw_only=True)
class ModalityCrossSpaceMaskingConfig(ModalityCrossRandomMaskingConfig):
    """Space masking, then per-sample encoded and decoded band sets
    (reference `modality_cross_space`)."""

    name = "modality_cross_space"

    allow_encoding_decoding_same_bandset: bool = False

    def build(self) -> ModalityCrossSpaceMasking:
        return ModalityCrossSpaceMasking(self)


class ModalityCrossSpaceMasking(ModalityCrossRandomMasking, SpaceMasking):
    """Stage 1 is `SpaceMasking.token_masks` (next in the method order); see the module
    docstring."""

    def follows_band_set_choice(self, name: str) -> bool:
        return not self.spec(name).is_spatial


@dataclasses.dataclass(kw_only=True)
class ModalityCrossTimeMaskingConfig(ModalityCrossRandomMaskingConfig, TimeMaskingConfig):
    """Time masking, then per-sample encoded and decoded band sets
    (reference `modality_cross_time`).

    Attributes:
        min_timesteps: fewest timesteps with data for a sample to be time-masked in
            stage 1 (fewer: random masking, as `time`).
    """

    name = "modality_cross_time"

    allow_encoding_decoding_same_bandset: bool = False

    def build(self) -> ModalityCrossTimeMasking:
        return ModalityCrossTimeMasking(self)


class ModalityCrossTimeMasking(ModalityCrossRandomMasking, TimeMasking):
    """Stage 1 is `TimeMasking.token_masks` (next in the method order); see the module
    docstring."""

    def follows_band_set_choice(self, name: str) -> bool:
        return not self.spec(name).is_multitemporal


@dataclasses.dataclass(kw_only=True)
class ModalityCrossSpaceTimeMaskingConfig(ModalityCrossTimeMaskingConfig):
    """`modality_cross_space` or `modality_cross_time`, chosen per sample with a fair coin
    (reference `modality_cross_space_time`); samples with fewer than `min_timesteps`
    timesteps with data always take the space one."""

    name = "modality_cross_space_time"

    def build(self) -> ModalityCrossSpaceTimeMasking:
        return ModalityCrossSpaceTimeMasking(self)


class ModalityCrossSpaceTimeMasking(SpaceTimeMasking):
    """See the module docstring. space_time's per-sample choice over the modality-cross
    pair: both candidates are drawn for every sample, so the generator's stream does not
    depend on the coin flips."""

    config: ModalityCrossSpaceTimeMaskingConfig
    space_class = ModalityCrossSpaceMasking
    time_class = ModalityCrossTimeMasking
