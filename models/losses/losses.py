"""Losses by name: the public entry point of `models.losses`.

    loss_fn = loss_config_from_name("modality_patch_discrimination_masked_negatives").build()
    token_loss = loss_fn(decoded, targets)          # TokensAndMasks, TokensAndMasks
    contrast = InfoNCELossConfig(weight=0.05).build()(pooled_a, pooled_b)

The reference's registry keys are accepted as aliases so its configs port unchanged.
"""

from __future__ import annotations

from typing import Any

from models.losses.info_nce import InfoNCELoss, InfoNCELossConfig
from models.losses.patch_discrimination import (
    MaskedNegativesPatchDiscriminationLoss,
    MaskedNegativesPatchDiscriminationLossConfig,
    ModalityPatchDiscriminationLoss,
    ModalityPatchDiscriminationLossConfig,
)

__all__ = [
    "LOSSES",
    "REFERENCE_ALIASES",
    "InfoNCELoss",
    "InfoNCELossConfig",
    "LossConfig",
    "MaskedNegativesPatchDiscriminationLoss",
    "MaskedNegativesPatchDiscriminationLossConfig",
    "ModalityPatchDiscriminationLoss",
    "ModalityPatchDiscriminationLossConfig",
    "loss_config_from_name",
]

LossConfig = (
    ModalityPatchDiscriminationLossConfig
    | MaskedNegativesPatchDiscriminationLossConfig
    | InfoNCELossConfig
)

LOSSES: dict[str, type[LossConfig]] = {
    config.name: config
    for config in (
        ModalityPatchDiscriminationLossConfig,
        MaskedNegativesPatchDiscriminationLossConfig,
        InfoNCELossConfig,
    )
}
"""Registry: loss name -> its config class."""

REFERENCE_ALIASES: dict[str, str] = {
    "modality_patch_discrimination_new": "modality_patch_discrimination",
    "modality_patch_discrimination_vec": "modality_patch_discrimination",
    "modality_patch_discrimination_masked_negatives_vec": (
        "modality_patch_discrimination_masked_negatives"
    ),
    "InfoNCE": "info_nce",
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
