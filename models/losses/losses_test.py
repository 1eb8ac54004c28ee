"""The loss registry: names, reference aliases and errors."""

import pytest

from models.losses.losses import (
    LOSSES,
    REFERENCE_ALIASES,
    InfoNCELoss,
    MaskedNegativesPatchDiscriminationLoss,
    ModalityPatchDiscriminationLoss,
    loss_config_from_name,
)


def test_registry_builds_each_loss_by_name():
    built = {name: config_class().build() for name, config_class in LOSSES.items()}
    assert type(built["modality_patch_discrimination"]) is ModalityPatchDiscriminationLoss
    assert isinstance(
        built["modality_patch_discrimination_masked_negatives"],
        MaskedNegativesPatchDiscriminationLoss,
    )
    assert isinstance(built["info_nce"], InfoNCELoss)


def test_reference_keys_resolve_to_our_losses_with_kwargs():
    for alias, name in REFERENCE_ALIASES.items():
        assert isinstance(loss_config_from_name(alias), LOSSES[name])
    config = loss_config_from_name("InfoNCE", weight=0.05)
    assert config.weight == 0.05 and config.tau == 0.1


def test_unknown_loss_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'triplet'.*'info_nce'.*InfoNCE"):
        loss_config_from_name("triplet")
