"""`modality_cross_random` (v1): how many band sets are encoded and decoded, and its ratios."""

import torch

from models.masking.modality_cross import ModalityCrossRandomMaskingConfig
from models.masking.testing import count, tiny_sample
from models.modalities import modalities
from models.modalities.samples import MaskValue

ENC, TGT, DEC, MIS = (int(v) for v in MaskValue)
ENCODABLE = ("sentinel2_l2a", "sentinel1", "landsat")  # 3 + 1 + 2 = 6 band sets


def _band_set_flags(masks, value):
    """[B, K] bool: does band set k of the encodable modalities hold a token of `value`?"""
    batch = next(iter(masks.values())).shape[0]
    columns = []
    for name in ENCODABLE:
        mask = masks[name]
        for s in range(mask.shape[-1]):
            columns.append((mask[..., s] == value).reshape(batch, -1).any(-1))
    return torch.stack(columns, dim=-1)


def _masks(config, sample, seed=0):
    return config.build().apply(sample, 1, torch.Generator().manual_seed(seed)).masks


def test_v1_encodes_between_two_and_all_encodable_band_sets_per_sample():
    sample = tiny_sample(batch=64, size=2, steps=2, with_gaps=False)
    masks = _masks(ModalityCrossRandomMaskingConfig(), sample)
    encoded = _band_set_flags(masks, ENC).sum(-1)
    assert encoded.min() >= 2 and encoded.max() <= 6
    # k is uniform on 2..6: with 64 samples every value shows up.
    assert set(encoded.tolist()) == {2, 3, 4, 5, 6}


def test_max_encoded_bandsets_caps_the_encoded_band_sets():
    sample = tiny_sample(batch=32, size=2, steps=2, with_gaps=False)
    config = ModalityCrossRandomMaskingConfig(min_encoded_bandsets=2, max_encoded_bandsets=3)
    encoded = _band_set_flags(_masks(config, sample), ENC).sum(-1)
    assert set(encoded.tolist()) == {2, 3}


def test_min_encoded_bandsets_is_capped_by_the_band_sets_a_sample_has():
    sample = tiny_sample(batch=8, size=2, steps=2, with_gaps=False)
    sample.data["landsat"][:] = modalities.MISSING_VALUE
    sample.data["sentinel1"][:] = modalities.MISSING_VALUE
    config = ModalityCrossRandomMaskingConfig(min_encoded_bandsets=5)
    encoded = _band_set_flags(_masks(config, sample), ENC).sum(-1)
    assert (encoded == 3).all()  # all three S2 band sets


def test_without_overlap_no_band_set_is_both_encoded_and_decoded():
    sample = tiny_sample(batch=16, size=2, steps=2, with_gaps=False)
    config = ModalityCrossRandomMaskingConfig(allow_encoding_decoding_same_bandset=False)
    masks = _masks(config, sample)
    both = _band_set_flags(masks, ENC) & _band_set_flags(masks, DEC)
    assert not both.any()
    # ... and at most all but one encodable band set is encoded.
    assert _band_set_flags(masks, ENC).sum(-1).max() <= 5


def test_with_overlap_some_band_sets_are_both_encoded_and_decoded():
    sample = tiny_sample(batch=16, size=2, steps=2, with_gaps=False)
    masks = _masks(ModalityCrossRandomMaskingConfig(), sample)
    assert (_band_set_flags(masks, ENC) & _band_set_flags(masks, DEC)).any()


def test_an_encoded_band_set_keeps_its_random_encoder_half():
    sample = tiny_sample(batch=16, size=4, steps=2, with_gaps=False)
    masks = _masks(ModalityCrossRandomMaskingConfig(), sample)
    s1 = masks["sentinel1"]  # one band set, 32 tokens per sample
    for b in range(16):
        n_encoded = count(s1[b], ENC)
        assert n_encoded in (0, 16), b  # all of stage 1's 16 encoder tokens, or none


def test_ratios_match_the_expected_v1_statistics():
    # Encodable band set: encoded with probability E[k] / 6 = 4 / 6, then half its tokens
    # are encoder tokens -> 1/3. Decoder share: 0.5 * (P(not encoded) + P(encoded and
    # decoded)) = 0.5 * (1/3 + 2/3 * E[j] / 12) with j uniform on 1..12 -> 0.347.
    # Maps are never encoded, so their decoder half always stays -> 0.5.
    sample = tiny_sample(batch=128, size=2, steps=2, with_gaps=False)
    masks = _masks(ModalityCrossRandomMaskingConfig(), sample)
    tokens = torch.cat([masks[name].reshape(128, -1) for name in ENCODABLE], dim=1)
    assert abs((tokens == ENC).float().mean() - 1 / 3) < 0.04
    assert abs((tokens == DEC).float().mean() - 0.5 * (1 / 3 + 2 / 3 * 6.5 / 12)) < 0.04
    maps = torch.cat([masks[name].reshape(128, -1) for name in ("srtm", "cdl")], dim=1)
    assert abs((maps == DEC).float().mean() - 0.5) < 0.05


def test_two_present_band_sets_encode_the_encodable_one_and_decode_the_map():
    sample = tiny_sample(
        batch=4, size=4, steps=2, names=["sentinel1", "worldcover"], with_gaps=False
    )
    for seed in range(4):
        masks = _masks(ModalityCrossRandomMaskingConfig(), sample, seed)
        s1, worldcover = masks["sentinel1"], masks["worldcover"]
        for b in range(4):
            assert count(s1[b], DEC) == 0 and count(s1[b], ENC) > 0
            assert count(worldcover[b], ENC) == 0 and count(worldcover[b], DEC) > 0


def test_single_band_set_tokenization_has_one_s2_and_one_landsat_band_set():
    sample = tiny_sample(batch=8, size=2, steps=2, with_gaps=False)
    config = ModalityCrossRandomMaskingConfig(tokenization=modalities.SINGLE_BANDSET_TOKENIZATION)
    masks = _masks(config, sample)
    assert masks["sentinel2_l2a"].shape[-1] == 1 and masks["landsat"].shape[-1] == 1
    encoded = torch.stack(
        [(masks[n] == ENC).reshape(8, -1).any(-1) for n in ENCODABLE], dim=-1
    ).sum(-1)
    assert encoded.min() >= 2
