"""Masking strategies by name: the public entry point of `models.masking`.

    config = masking_config_from_name("modality_cross_random", tokenization=tok)
    strategy = config.build()
    view = strategy.apply(sample, patch_size=4, generator=torch.Generator().manual_seed(0))

Every strategy returns a `MaskedSample` whose masks are `[B, H, W, T, S]` int8
`MaskValue`s, constant inside each patch and MISSING exactly where a band set has no
data (see `models.masking.base` for the shared rules), except that the strategies which
drop whole modalities on purpose (selectable_modality, selectable_random_range_modality,
random_fixed_modality with randomize_missing_modalities) also mark the dropped ones MISSING.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.masking.base import DECODE_ONLY_MODALITIES, MaskingConfig, MaskingStrategy
from models.masking.fixed_modality import (
    RandomFixedModalityMasking,
    RandomFixedModalityMaskingConfig,
)
from models.masking.modality_cross import (
    ModalityCrossRandomMasking,
    ModalityCrossRandomMaskingConfig,
)
from models.masking.modality_cross_axes import (
    ModalityCrossSpaceMasking,
    ModalityCrossSpaceMaskingConfig,
    ModalityCrossSpaceTimeMasking,
    ModalityCrossSpaceTimeMaskingConfig,
    ModalityCrossTimeMasking,
    ModalityCrossTimeMaskingConfig,
)
from models.masking.random_space_time import (
    RandomMasking,
    RandomMaskingConfig,
    SpaceMasking,
    SpaceMaskingConfig,
    TimeMasking,
    TimeMaskingConfig,
)
from models.masking.ratio_schedules import (
    RandomIncreasingMasking,
    RandomIncreasingMaskingConfig,
    RandomRangeMasking,
    RandomRangeMaskingConfig,
)
from models.masking.selectable import (
    SelectableModalityMasking,
    SelectableModalityMaskingConfig,
    SelectableRandomRangeModalityMasking,
    SelectableRandomRangeModalityMaskingConfig,
)
from models.masking.space_time import (
    RandomSpaceMasking,
    RandomSpaceMaskingConfig,
    SpaceTimeMasking,
    SpaceTimeMaskingConfig,
)
from models.masking.with_decode import (
    RandomTimeWithDecodeMasking,
    RandomTimeWithDecodeMaskingConfig,
    RandomWithDecodeMasking,
    RandomWithDecodeMaskingConfig,
)

__all__ = [
    "DECODE_ONLY_MODALITIES",
    "MASKING_STRATEGIES",
    "MaskingConfig",
    "MaskingStrategy",
    "ModalityCrossRandomMasking",
    "ModalityCrossRandomMaskingConfig",
    "ModalityCrossSpaceMasking",
    "ModalityCrossSpaceMaskingConfig",
    "ModalityCrossSpaceTimeMasking",
    "ModalityCrossSpaceTimeMaskingConfig",
    "ModalityCrossTimeMasking",
    "ModalityCrossTimeMaskingConfig",
    "RandomFixedModalityMasking",
    "RandomFixedModalityMaskingConfig",
    "RandomIncreasingMasking",
    "RandomIncreasingMaskingConfig",
    "RandomMasking",
    "RandomMaskingConfig",
    "RandomRangeMasking",
    "RandomRangeMaskingConfig",
    "RandomSpaceMasking",
    "RandomSpaceMaskingConfig",
    "RandomTimeWithDecodeMasking",
    "RandomTimeWithDecodeMaskingConfig",
    "RandomWithDecodeMasking",
    "RandomWithDecodeMaskingConfig",
    "SelectableModalityMasking",
    "SelectableModalityMaskingConfig",
    "SelectableRandomRangeModalityMasking",
    "SelectableRandomRangeModalityMaskingConfig",
    "SpaceMasking",
    "SpaceMaskingConfig",
    "SpaceTimeMasking",
    "SpaceTimeMaskingConfig",
    "TimeMasking",
    "TimeMaskingConfig",
    "masking_config_from_name",
]

MASKING_STRATEGIES: dict[str, type[MaskingConfig]] = {
    config.name: config
    for config in (
        RandomMaskingConfig,
        SpaceMaskingConfig,
        TimeMaskingConfig,
        ModalityCrossRandomMaskingConfig,
        RandomTimeWithDecodeMaskingConfig,
        SpaceTimeMaskingConfig,
        RandomSpaceMaskingConfig,
        ModalityCrossSpaceMaskingConfig,
        ModalityCrossTimeMaskingConfig,
        ModalityCrossSpaceTimeMaskingConfig,
        RandomIncreasingMaskingConfig,
        RandomRangeMaskingConfig,
        SelectableModalityMaskingConfig,
        SelectableRandomRangeModalityMaskingConfig,
        RandomFixedModalityMaskingConfig,
        RandomWithDecodeMaskingConfig,
    )
}
"""Registry: strategy name (the reference's registry key) -> its config class. All 16 of
the reference's keys (olmoearth_pretrain 0.1.2, `MASKING_STRATEGY_REGISTRY`)."""


def masking_config_from_name(name: str, **kwargs: Any) -> MaskingConfig:
    """The config of strategy `name`, built with `kwargs` (validated by the config)."""
    try:
        config_class = MASKING_STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown masking strategy {name!r}; valid names are {list(MASKING_STRATEGIES)}"
        ) from None
    try:
        return config_class(**kwargs)
    except TypeError as error:  # a missing required field or an unknown one
        fields = [field.name for field in dataclasses.fields(config_class) if field.init]
        raise ValueError(f"masking strategy {name!r}: {error}; its fields are {fields}") from None
