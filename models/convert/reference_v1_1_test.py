"""v1.1 checkpoint conversion on synthetic reference-shaped state dicts (no reference needed)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
import torch

from models.convert import reference_checkpoint as rc
from models.convert import reference_v1_1 as rc11
from models.latent_mim import sizes
from models.latent_mim.v1_1 import LatentMIMV11, LatentMIMV11Config
from models.nn.encodings import month_table

FIXTURE = pathlib.Path(__file__).parent / "testdata" / "reference_v1_1_small_state_dict.json"
"""Key names and shapes of a real reference v1.1 LatentMIM (olmoearth-pretrain 0.1.2;
parity_v1_1_test.py checks that the installed reference still produces exactly these)."""

PIXEL = "patch_embeddings.per_modality_embeddings.landsat.landsat__0.pixel_proj.0.weight"
OUR_PIXEL = "patch_embed.modalities.landsat.band_sets.0.pixel_proj.weight"


def _fixture() -> dict:
    return json.loads(FIXTURE.read_text())


def _size() -> sizes.ModelSize:
    c = _fixture()["config"]
    return sizes.ModelSize(
        c["encoder_width"],
        c["encoder_depth"],
        c["encoder_heads"],
        c["decoder_width"],
        c["decoder_depth"],
        c["decoder_heads"],
        c["mlp_ratio"],
    )


def reference_style_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values under the reference's v1.1 key names and shapes; real month tables."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {
        key: torch.randn(shape, generator=generator) for key, shape in _fixture()["state_dict"]
    }
    for key, value in state_dict.items():
        if key.endswith("month_embed.weight"):
            state_dict[key] = month_table(value.shape[-1])
    return state_dict


def small_model(pixel_hidden_width: int | None = None, **kwargs) -> LatentMIMV11:
    config = LatentMIMV11Config.from_size(_size(), **kwargs)
    hidden = pixel_hidden_width or _fixture()["config"]["pixel_hidden_width"]
    encoder = dataclasses.replace(config.encoder, pixel_hidden_width=hidden)
    return dataclasses.replace(config, encoder=encoder).build()


def test_a_reference_v1_1_checkpoint_loads_strictly_with_every_weight_in_place():
    state_dict = reference_style_state_dict()
    model = small_model()
    rc11.load_reference_v1_1_checkpoint(state_dict, model)
    ours = model.state_dict()
    assert torch.equal(ours[f"encoder.{OUR_PIXEL}"], state_dict[f"encoder.{PIXEL}"])
    assert torch.equal(ours[f"target.{OUR_PIXEL}"], state_dict[f"target_encoder.{PIXEL}"])
    proj = "patch_embeddings.per_modality_embeddings.sentinel2_l2a.sentinel2_l2a__0.proj.weight"
    assert torch.equal(
        ours["encoder.patch_embed.modalities.sentinel2_l2a.band_sets.0.proj.weight"],
        state_dict[f"encoder.{proj}"],
    )
    pixel_keys = [key for key in ours if "pixel_proj" in key]
    # Encoder and target, weight and bias, nine spatial modalities of one band set each.
    assert len(pixel_keys) == 2 * 2 * 9


def test_an_encoder_loads_the_encoder_part_or_a_bare_encoder_state_dict():
    state_dict = reference_style_state_dict()
    encoder = small_model().encoder
    rc11.load_reference_v1_1_checkpoint(state_dict, encoder)
    assert torch.equal(encoder.state_dict()[OUR_PIXEL], state_dict[f"encoder.{PIXEL}"])
    bare = {k[len("encoder.") :]: v for k, v in state_dict.items() if k.startswith("encoder.")}
    other = small_model().encoder
    rc11.load_reference_v1_1_checkpoint(bare, other)
    assert torch.equal(other.state_dict()[OUR_PIXEL], bare[PIXEL])


def test_an_ema_target_takes_the_whole_target_copy():
    state_dict = reference_style_state_dict()
    model = small_model(target="ema")
    rc11.load_reference_v1_1_checkpoint(state_dict, model)
    assert torch.equal(
        model.state_dict()[f"target.{OUR_PIXEL}"], state_dict[f"target_encoder.{PIXEL}"]
    )
    assert torch.equal(
        model.state_dict()["target.norm.weight"], state_dict["target_encoder.norm.weight"]
    )


def test_export_is_the_inverse_up_to_the_dead_target_weights():
    state_dict = reference_style_state_dict()
    model = small_model()
    rc11.load_reference_v1_1_checkpoint(state_dict, model)
    exported = rc11.reference_v1_1_state_dict_of(model)
    live = {
        key: value
        for key, value in state_dict.items()
        if not key.startswith("target_encoder.") or ".patch_embeddings." in key
    }
    assert set(exported) == set(live)
    for key, value in live.items():
        assert torch.equal(exported[key], value), key


def test_the_v1_converter_names_the_per_pixel_keys_it_cannot_map():
    with pytest.raises(rc.ReferenceCheckpointError, match="pixel_proj.0.weight") as error:
        rc.convert_reference_state_dict(reference_style_state_dict(), patch_embed="linear")
    assert f"encoder.{PIXEL}" in error.value.unexpected


def test_a_checkpoint_of_another_hidden_width_is_refused_with_the_shapes():
    model = small_model(pixel_hidden_width=64)
    with pytest.raises(rc.ReferenceCheckpointError, match="shape mismatches") as error:
        rc11.load_reference_v1_1_checkpoint(reference_style_state_dict(), model)
    assert any(OUR_PIXEL in entry for entry in error.value.mismatched)


def test_a_checkpoint_without_the_per_pixel_layers_is_refused_naming_them():
    state_dict = {k: v for k, v in reference_style_state_dict().items() if "pixel_proj" not in k}
    with pytest.raises(rc.ReferenceCheckpointError, match="missing keys") as error:
        rc11.load_reference_v1_1_checkpoint(state_dict, small_model())
    assert f"encoder.{OUR_PIXEL}" in error.value.missing
