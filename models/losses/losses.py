"""Losses by name: the public entry point of `models.losses`.

    loss_fn = loss_config_from_name("modality_patch_discrimination_masked_negatives").build()
    token_loss = loss_fn(decoded, targets)          # TokensAndMasks, TokensAndMasks
    contrast = InfoNCELossConfig(weight=0.05).build()(pooled_a, pooled_b)
    spread = loss_config_from_name("KoLeo").build()(encoded)   # online encoder output

The reference's registry keys are accepted as aliases so its configs port unchanged.
"""

from __future__ import annotations

from typing import Any

from models.losses.adjusted_patch_discrimination import (
    AdjustedPatchDiscriminationLoss,
    AdjustedPatchDiscriminationLossConfig,
)
from models.losses.all_discrimination import (
    AllDiscriminationLoss,
    AllDiscriminationLossConfig,
    ModalityAllDiscriminationLoss,
    ModalityAllDiscriminationLossConfig,
)
from models.losses.info_nce import InfoNCELoss, InfoNCELossConfig
from models.losses.koleo import KoLeoLoss, KoLeoLossConfig
from models.losses.mae import MAELoss, MAELossConfig
from models.losses.patch_discrimination import (
    MaskedNegativesPatchDiscriminationLoss,
    MaskedNegativesPatchDiscriminationLossConfig,
    ModalityPatchDiscriminationLoss,
    ModalityPatchDiscriminationLossConfig,
    PatchDiscriminationLoss,
    PatchDiscriminationLossConfig,
)
from models.losses.token_losses import (
    CosineSimilarityLoss,
    CosineSimilarityLossConfig,
    CrossEntropyLoss,
    CrossEntropyLossConfig,
    L1Loss,
    L1LossConfig,
    L2Loss,
    L2LossConfig,
)

__all__ = [
    "LOSSES",
    "REFERENCE_ALIASES",
    "AdjustedPatchDiscriminationLoss",
    "AdjustedPatchDiscriminationLossConfig",
    "AllDiscriminationLoss",
    "AllDiscriminationLossConfig",
    "CosineSimilarityLoss",
    "CosineSimilarityLossConfig",
    "CrossEntropyLoss",
    "CrossEntropyLossConfig",
    "InfoNCELoss",
    "InfoNCELossConfig",
    "KoLeoLoss",
    "KoLeoLossConfig",
    "L1Loss",
    "L1LossConfig",
    "L2Loss",
    "L2LossConfig",
    "LossConfig",
    "MAELoss",
    "MAELossConfig",
    "MaskedNegativesPatchDiscriminationLoss",
    "MaskedNegativesPatchDiscriminationLossConfig",
    "ModalityAllDiscriminationLoss",
    "ModalityAllDiscriminationLossConfig",
    "ModalityPatchDiscriminationLoss",
    "ModalityPatchDiscriminationLossConfig",
    "PatchDiscriminationLoss",
    "PatchDiscriminationLossConfig",
    "loss_config_from_name",
]

LossConfig = (
    ModalityPatchDiscriminationLossConfig
    | MaskedNegativesPatchDiscriminationLossConfig
    | PatchDiscriminationLossConfig
    | AllDiscriminationLossConfig
    | ModalityAllDiscriminationLossConfig
    | AdjustedPatchDiscriminationLossConfig
    | L1LossConfig
    | L2LossConfig
    | CosineSimilarityLossConfig
    | CrossEntropyLossConfig
    | MAELossConfig
    | InfoNCELossConfig
    | KoLeoLossConfig
)

LOSSES: dict[str, type[LossConfig]] = {
    config.name: config
    for config in (
        # Token losses: (predicted TokensAndMasks, target TokensAndMasks) -> scalar.
        ModalityPatchDiscriminationLossConfig,
        MaskedNegativesPatchDiscriminationLossConfig,
        PatchDiscriminationLossConfig,
        AllDiscriminationLossConfig,
        ModalityAllDiscriminationLossConfig,
        AdjustedPatchDiscriminationLossConfig,
        L1LossConfig,
        L2LossConfig,
        CosineSimilarityLossConfig,
        CrossEntropyLossConfig,
        # Pixel reconstruction: (reconstructed data per modality, MaskedSample) -> scalar.
        MAELossConfig,
        # Pooled vectors of two views: ([B, D], [B, D]) -> scalar.
        InfoNCELossConfig,
        # Online encoder output (TokensAndMasks or [B, D]) -> scalar.
        KoLeoLossConfig,
    )
}
"""Registry: loss name -> its config class (every registry key of the reference resolves,
directly or through REFERENCE_ALIASES)."""

REFERENCE_ALIASES: dict[str, str] = {
    "modality_patch_discrimination_new": "modality_patch_discrimination",
    "modality_patch_discrimination_vec": "modality_patch_discrimination",
    "modality_patch_discrimination_masked_negatives_vec": (
        "modality_patch_discrimination_masked_negatives"
    ),
    "patch_discrimination_new": "patch_discrimination",
    "InfoNCE": "info_nce",
    "KoLeo": "koleo",
}
"""The reference's registry keys for the same losses."""


def loss_config_from_name(name: str, **kwargs: Any) -> LossConfig:
    """The config of loss `name` (or a reference alias), built with `kwargs`."""
    config_class = LOSSES.get(REFERENCE_ALIASES.get(name, name))
    if config_class is None:
        raise ValueError(
            f"unknown loss {name!r}; valid names are {list(LOSSES)} "
            f"(reference aliases: {list(REFERENCE_ALIASES)})"
        )
    return config_class(**kwargs)
