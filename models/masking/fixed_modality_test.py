"""`random_fixed_modality`: always-decoded modalities and per-sample dropped ones."""

import pytest
import torch

from models.masking.fixed_modality import RandomFixedModalityMaskingConfig
from models.masking.testing import count, tiny_sample
from models.modalities import modalities
from models.modalities.samples import MaskValue, missing_band_set_mask

ENC, TGT, DEC, MIS = (int(v) for v in MaskValue)
DROPPABLE = ("sentinel2_l2a", "sentinel1", "landsat")


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def test_decoded_modalities_are_decoder_wherever_they_have_data():
    sample = tiny_sample()
    config = RandomFixedModalityMaskingConfig(decoded_modalities=("worldcover", "landsat"))
    masks = config.build().apply(sample, 2, _seeded()).masks
    for name in ("worldcover", "landsat"):
        no_data = missing_band_set_mask(sample.data[name], modalities.get(name))
        assert torch.equal(masks[name] == MIS, no_data), name
        assert (masks[name][~no_data] == DEC).all(), name
    assert (masks["worldcover"][1] == MIS).all()  # sample 1 has no WorldCover
    assert count(masks["sentinel1"], ENC) > 0  # the others are randomly masked


def test_randomize_missing_drops_some_but_never_all_complete_modalities():
    sample = tiny_sample(batch=4, size=4, steps=3, with_gaps=False)
    config = RandomFixedModalityMaskingConfig(
        decoded_modalities=(), randomize_missing_modalities=DROPPABLE
    )
    dropped_counts = set()
    for seed in range(20):
        masks = config.build().apply(sample, 1, _seeded(seed)).masks
        for b in range(4):
            dropped = [name for name in DROPPABLE if (masks[name][b] == MIS).all()]
            kept = [name for name in DROPPABLE if not (masks[name][b] == MIS).any()]
            assert len(dropped) + len(kept) == 3  # a modality is dropped wholly or not at all
            assert kept, (seed, b)
            dropped_counts.add(len(dropped))
    assert dropped_counts == {0, 1, 2}  # uniform over 0 .. 3 - 1


def test_randomize_missing_never_drops_a_modality_with_gaps_or_the_last_complete_one():
    # Fixture gaps: sample 1 has no S1, sample 2 lacks Landsat at two timesteps.
    sample = tiny_sample(batch=4, size=4, steps=3)
    config = RandomFixedModalityMaskingConfig(
        decoded_modalities=(), randomize_missing_modalities=("sentinel1", "landsat")
    )
    for seed in range(20):
        masks = config.build().apply(sample, 1, _seeded(seed)).masks
        # Sample 1: only Landsat is complete, sample 2 only S1: fewer than two, no drop.
        assert not (masks["landsat"][1] == MIS).all()
        assert not (masks["sentinel1"][2] == MIS).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decoded_modalities": "srtm"}, "decoded_modalities must be a sequence of modality"),
        ({"decoded_modalities": ("dem",)}, r"decoded_modalities has unknown modalities \['dem'\]"),
        (
            {"decoded_modalities": (), "randomize_missing_modalities": ("s3",)},
            "randomize_missing_modalities has unknown modalities",
        ),
    ],
)
def test_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomFixedModalityMaskingConfig(**kwargs)


def test_decoded_modalities_is_required_as_in_the_reference():
    with pytest.raises(TypeError, match="decoded_modalities"):
        RandomFixedModalityMaskingConfig()
