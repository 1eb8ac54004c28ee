"""Rules shared by every masking strategy: patch constancy, MISSING, decode-only, guarantees,
determinism, pickling, the registry and config validation."""

import dataclasses
import pickle

import pytest
import torch

from models.config import serialization
from models.masking import masking
from models.masking.masking import (
    MASKING_STRATEGIES,
    ModalityCrossRandomMaskingConfig,
    RandomMaskingConfig,
    RandomTimeWithDecodeMaskingConfig,
    TimeMaskingConfig,
    masking_config_from_name,
)
from models.masking.testing import tiny_sample
from models.modalities import modalities
from models.modalities.samples import MaskValue, missing_band_set_mask

NAMES = list(MASKING_STRATEGIES)
TOKENIZATIONS = {
    "default": modalities.DEFAULT_TOKENIZATION,
    "single_bandset": modalities.SINGLE_BANDSET_TOKENIZATION,
}


# The fields these strategies require (as the reference does). No modality is dropped
# here, so the shared MISSING rule holds; dropping is tested in their own test files.
REQUIRED_KWARGS = {
    "selectable_modality": {
        "decodable_modalities": ("landsat", "worldcover"),
        "fully_mask_modalities": (),
        "max_to_mask": 2,
    },
    "random_fixed_modality": {"decoded_modalities": ("worldcover",)},
}
REQUIRED_KWARGS["selectable_random_range_modality"] = REQUIRED_KWARGS["selectable_modality"]


def _config(name, **kwargs):
    return masking_config_from_name(name, **{**REQUIRED_KWARGS.get(name, {}), **kwargs})


def _apply(name, sample, patch_size, seed=0, tokenization="default", **kwargs):
    config = _config(name, tokenization=TOKENIZATIONS[tokenization], **kwargs)
    return config.build().apply(sample, patch_size, torch.Generator().manual_seed(seed))


def test_registry_holds_the_references_sixteen_strategies_by_its_names():
    assert set(NAMES) == {
        "random",
        "space",
        "time",
        "modality_cross_random",
        "random_time_with_decode",
        "space_time",
        "random_space",
        "modality_cross_space",
        "modality_cross_time",
        "modality_cross_space_time",
        "random_increasing",
        "random_range",
        "selectable_modality",
        "selectable_random_range_modality",
        "random_fixed_modality",
        "random_with_decode",
    }
    for name, config_class in MASKING_STRATEGIES.items():
        strategy = config_class(**REQUIRED_KWARGS.get(name, {})).build()
        assert isinstance(strategy, masking.MaskingStrategy)
        assert strategy.name == name


def test_a_missing_or_unknown_field_names_the_strategy_and_its_fields():
    with pytest.raises(ValueError, match="'selectable_modality'.*missing 3 required.*max_to_mask"):
        masking_config_from_name("selectable_modality")
    with pytest.raises(ValueError, match="'random_range'.*encode_ratio.*'min_encode_ratio'"):
        masking_config_from_name("random_range", encode_ratio=0.3)


@pytest.mark.parametrize("name", NAMES)
def test_configs_round_trip_through_yaml(name):
    config = _config(name)
    assert serialization.from_yaml(serialization.to_yaml(config)) == config


def test_unknown_strategy_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown masking strategy 'spacetime'.*'random'"):
        masking_config_from_name("spacetime")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tokenization", list(TOKENIZATIONS))
@pytest.mark.parametrize("patch_size", [1, 2, 4])
def test_masks_have_band_set_shape_and_are_constant_inside_each_patch(
    name, tokenization, patch_size
):
    sample = tiny_sample()
    masked = _apply(name, sample, patch_size, tokenization=tokenization)
    assert masked.data is not sample.data and masked.data.keys() == sample.data.keys()
    for modality, mask in masked.masks.items():
        spec = TOKENIZATIONS[tokenization].spec(modality)
        assert mask.dtype == torch.int8
        assert mask.shape == (*sample.data[modality].shape[:-1], spec.num_band_sets)
        # Every pixel equals its patch's top-left pixel, except the pixel-level holes.
        top_left = mask[:, ::patch_size, ::patch_size]
        expanded = top_left.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
        differs = mask != expanded
        holes = missing_band_set_mask(sample.data[modality], spec)
        assert (~differs | holes | (expanded == MaskValue.MISSING)).all(), modality
        if modality != "srtm":  # the only pixel-level hole of the fixture
            assert not differs.any(), modality


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("tokenization", list(TOKENIZATIONS))
def test_missing_is_set_exactly_where_a_band_set_has_no_data(name, tokenization):
    sample = tiny_sample()
    masked = _apply(name, sample, 2, tokenization=tokenization)
    for modality, mask in masked.masks.items():
        spec = TOKENIZATIONS[tokenization].spec(modality)
        no_data = missing_band_set_mask(sample.data[modality], spec)
        assert torch.equal(mask == MaskValue.MISSING, no_data), modality
    # The fixture's holes are really there (the check above is not vacuous).
    assert (masked.masks["sentinel1"][1] == MaskValue.MISSING).all()
    s2_t2 = masked.masks["sentinel2_l2a"][0, :, :, 2]  # only the 40 m bands are missing
    if tokenization == "default":
        assert (s2_t2[..., 2] == MaskValue.MISSING).all()
    assert (s2_t2[..., 0] != MaskValue.MISSING).all()  # one S2 band set: it has data
    assert masked.masks["srtm"][3, 0, 1, 0, 0] == MaskValue.MISSING
    assert masked.masks["srtm"][3, 0, 0, 0, 0] != MaskValue.MISSING


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_only_modalities_never_get_online_encoder(name, seed):
    masked = _apply(name, tiny_sample(seed=seed), 1, seed=seed)
    for modality in masking.DECODE_ONLY_MODALITIES:
        mask = masked.masks[modality]
        assert not (mask == MaskValue.ONLINE_ENCODER).any(), modality
    assert any((m == MaskValue.ONLINE_ENCODER).any() for m in masked.masks.values())


@pytest.mark.parametrize("name", NAMES)
def test_a_modality_made_decode_only_by_config_is_never_encoded(name):
    only_decode = (*masking.DECODE_ONLY_MODALITIES, "landsat")
    masked = _apply(name, tiny_sample(), 1, only_decode_modalities=only_decode)
    assert not (masked.masks["landsat"] == MaskValue.ONLINE_ENCODER).any()


def _hard_samples():
    """Samples where a naive strategy leaves some sample without encoder or decoder tokens."""
    # One patch per side (patch size = image size) and a single timestep: space masking's
    # int(1 * 0.5) = 0 patches, time masking has too few timesteps.
    yield "one_patch_per_side", tiny_sample(size=4, steps=1), 4
    # Only Sentinel-1 with one patch and two timesteps: 2 tokens per sample.
    yield "two_tokens", tiny_sample(size=2, steps=2, names=["sentinel1"], with_gaps=False), 2
    # S2 and two maps, small grid.
    yield "s2_and_maps", tiny_sample(size=2, steps=3, names=["sentinel2_l2a", "srtm", "cdl"]), 1
    yield "full", tiny_sample(), 2


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", list(_hard_samples()), ids=lambda case: case[0])
def test_every_sample_keeps_an_encoder_and_a_decoder_token(name, case):
    _, sample, patch_size = case
    for seed in range(5):
        masked = _apply(name, sample, patch_size, seed=seed)
        batch = sample.batch_size
        flat = torch.cat([m.reshape(batch, -1) for m in masked.masks.values()], dim=1)
        assert (flat == MaskValue.ONLINE_ENCODER).any(1).all(), (seed, flat)
        assert (flat == MaskValue.DECODER).any(1).all(), (seed, flat)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("steps", [1, 4])
def test_a_modality_without_data_in_any_sample_stays_missing(name, steps):
    sample = tiny_sample(steps=steps)
    sample.data["sentinel1"][:] = modalities.MISSING_VALUE
    masked = _apply(name, sample, 2)
    assert (masked.masks["sentinel1"] == MaskValue.MISSING).all()
    batch = sample.batch_size
    flat = torch.cat([m.reshape(batch, -1) for m in masked.masks.values()], dim=1)
    assert (flat == MaskValue.ONLINE_ENCODER).any(1).all()
    assert (flat == MaskValue.DECODER).any(1).all()


@pytest.mark.parametrize("name", NAMES)
def test_masks_are_a_function_of_the_generator_seed(name):
    sample = tiny_sample()
    first = _apply(name, sample, 2, seed=7)
    again = _apply(name, sample, 2, seed=7)
    other = _apply(name, sample, 2, seed=8)
    for modality in first.masks:
        assert torch.equal(first.masks[modality], again.masks[modality])
    assert any(not torch.equal(first.masks[m], other.masks[m]) for m in first.masks)


@pytest.mark.parametrize("name", NAMES)
def test_config_and_strategy_survive_pickling_for_dataloader_workers(name):
    config = _config(name, tokenization=modalities.SINGLE_BANDSET_TOKENIZATION)
    strategy = config.build()
    copy = pickle.loads(pickle.dumps(strategy))
    assert pickle.loads(pickle.dumps(config)) == config
    sample = tiny_sample()
    a = strategy.apply(sample, 2, torch.Generator().manual_seed(3))
    b = copy.apply(sample, 2, torch.Generator().manual_seed(3))
    assert all(torch.equal(a.masks[m], b.masks[m]) for m in a.masks)


def test_latlon_without_spatial_axes_is_masked_per_band_set():
    sample = tiny_sample(names=["sentinel2_l2a", "latlon"], with_gaps=False)
    for name in NAMES:
        mask = _apply(name, sample, 2).masks["latlon"]
        assert mask.shape == (4, 1)
        assert not (mask == MaskValue.MISSING).any()


def test_patch_size_must_divide_the_image():
    strategy = RandomMaskingConfig().build()
    with pytest.raises(ValueError, match="sentinel2_l2a.*8 x 8.*patch_size 3"):
        strategy.apply(tiny_sample(), 3, torch.Generator())
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        strategy.apply(tiny_sample(), 0, torch.Generator())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encode_ratio": 1.5}, r"RandomMaskingConfig.encode_ratio must be a number in \[0, 1\]"),
        ({"decode_ratio": -0.1}, r"decode_ratio must be a number in \[0, 1\]"),
        ({"encode_ratio": 0.7, "decode_ratio": 0.4}, r"encode_ratio \+ decode_ratio must be <= 1"),
        ({"only_decode_modalities": ("srtm", "dem")}, r"unknown modalities \['dem'\].*'srtm'"),
        ({"only_decode_modalities": "srtm"}, "sequence of modality names, not the string"),
        ({"tokenization": {"sentinel2_l2a": []}}, "must be a models.modalities.modalities.Token"),
    ],
)
def test_base_config_errors_name_the_field_and_allowed_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandomMaskingConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_encoded_bandsets": 1}, "min_encoded_bandsets must be None or >= 2; got 1"),
        ({"min_encoded_bandsets": 2.5}, "min_encoded_bandsets must be None or an int >= 1"),
        ({"min_encoded_bandsets": None, "max_encoded_bandsets": 3}, "needs min_encoded"),
        ({"min_encoded_bandsets": 4, "max_encoded_bandsets": 3}, "max_encoded_bandsets must be"),
        ({"min_decoded_bandsets": 3, "max_decoded_bandsets": 2}, "max_decoded_bandsets must be"),
        ({"allow_encoding_decoding_same_bandset": "yes"}, "must be True or False"),
    ],
)
def test_modality_cross_config_errors_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModalityCrossRandomMaskingConfig(**kwargs)


def test_other_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"random_ratio must be a number in \[0, 1\]; got 2"):
        RandomTimeWithDecodeMaskingConfig(random_ratio=2)
    with pytest.raises(ValueError, match="min_timesteps must be >= 2"):
        TimeMaskingConfig(min_timesteps=1)


def test_configs_are_dataclasses_with_recipe_defaults():
    v1 = ModalityCrossRandomMaskingConfig()
    assert (v1.encode_ratio, v1.decode_ratio) == (0.5, 0.5)
    assert v1.allow_encoding_decoding_same_bandset and v1.min_encoded_bandsets == 2
    assert set(v1.only_decode_modalities) == set(modalities.TRAINING_MODALITIES[3:])
    v11 = RandomTimeWithDecodeMaskingConfig()
    assert (v11.encode_ratio, v11.decode_ratio, v11.random_ratio) == (0.5, 0.5, 0.5)
    assert dataclasses.replace(v1, encode_ratio=0.25).encode_ratio == 0.25


def test_apply_views_gives_the_views_of_successive_apply_calls():
    strategy = masking_config_from_name("modality_cross_random").build()
    sample = tiny_sample(batch=4, size=8, steps=3, seed=5)
    views = strategy.apply_views(sample, 2, torch.Generator().manual_seed(3), num_views=2)
    generator = torch.Generator().manual_seed(3)
    expected = [strategy.apply(sample, 2, generator) for _ in range(2)]
    for view, reference in zip(views, expected, strict=True):
        assert view.masks.keys() == reference.masks.keys()
        for name in view.masks:
            assert torch.equal(view.masks[name], reference.masks[name]), name
    assert not torch.equal(views[0].masks["sentinel2_l2a"], views[1].masks["sentinel2_l2a"])


def test_a_one_patch_window_gets_pixel_exact_missing_masks():
    strategy = masking_config_from_name("modality_cross_random").build()
    sample = tiny_sample(batch=4, size=4, steps=2, seed=1)
    view = strategy.apply(sample, 4, torch.Generator().manual_seed(0))  # h = w = 1
    for name, mask in view.masks.items():
        missing = missing_band_set_mask(sample.data[name], modalities.get(name))
        assert torch.equal(mask == MaskValue.MISSING, missing), name
