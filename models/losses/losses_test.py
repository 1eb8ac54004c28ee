"""The loss registry: names, reference aliases and errors."""

import pytest
import torch

from models.config import serialization
from models.config.configurable import is_configurable_class
from models.losses.losses import (
    LOSSES,
    REFERENCE_ALIASES,
    AdjustedPatchDiscriminationLoss,
    AllDiscriminationLoss,
    CosineSimilarityLoss,
    CrossEntropyLoss,
    InfoNCELoss,
    KoLeoLoss,
    L1Loss,
    L2Loss,
    MAELoss,
    MaskedNegativesPatchDiscriminationLoss,
    ModalityAllDiscriminationLoss,
    ModalityPatchDiscriminationLoss,
    PatchDiscriminationLoss,
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
    for name, loss in built.items():
        assert isinstance(loss, torch.nn.Module), name


def test_every_registered_config_is_a_configurable_under_its_own_name():
    for name, config_class in LOSSES.items():
        assert is_configurable_class(config_class), name
        assert config_class.name == name


def test_the_reference_losses_added_since_v1_are_registered_under_its_keys():
    reference_keys = {
        "all_discrimination": AllDiscriminationLoss,
        "modality_all_discrimination": ModalityAllDiscriminationLoss,
        "patch_discrimination": PatchDiscriminationLoss,
        "patch_discrimination_new": PatchDiscriminationLoss,
        "adjusted_patch_discrimination": AdjustedPatchDiscriminationLoss,
        "l1": L1Loss,
        "l2": L2Loss,
        "cosine_similarity": CosineSimilarityLoss,
        "cross_entropy": CrossEntropyLoss,
        "mae": MAELoss,
        "KoLeo": KoLeoLoss,
    }
    for key, loss_class in reference_keys.items():
        assert type(loss_config_from_name(key).build()) is loss_class, key
    assert loss_config_from_name("KoLeo", mode="patch").mode == "patch"


def test_reference_keys_resolve_to_our_losses_with_kwargs():
    for alias, name in REFERENCE_ALIASES.items():
        assert isinstance(loss_config_from_name(alias), LOSSES[name])
    config = loss_config_from_name("InfoNCE", weight=0.05)
    assert config.weight == 0.05 and config.tau == 0.1


def test_unknown_loss_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown loss 'triplet'.*'info_nce'.*InfoNCE"):
        loss_config_from_name("triplet")


def test_every_loss_config_round_trips_through_the_config_engine():
    for name, config_class in LOSSES.items():
        config = config_class()
        assert serialization.from_dict(serialization.to_dict(config)) == config, name
    mae = loss_config_from_name("mae", loss_function="HuberLoss", loss_kwargs={"delta": 0.5})
    assert serialization.from_dict(serialization.to_dict(mae)) == mae
