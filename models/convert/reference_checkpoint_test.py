"""Reference checkpoint conversion on synthetic reference-shaped state dicts (no reference)."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
import torch

from models.convert import reference_checkpoint as rc
from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIM, LatentMIMConfig
from models.modalities import modalities
from models.modalities.samples import MaskedSample, Sample
from models.nn.encodings import month_table
from models.train import checkpoint

FIXTURE = pathlib.Path(__file__).parent / "testdata" / "reference_v1_small_state_dict.json"
"""Key names and shapes of a real reference LatentMIM (written from olmoearth-pretrain 0.1.2;
parity_test.py checks that the installed reference still produces exactly these)."""


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
    """Random values under the reference's key names and shapes; month tables are the real
    fixed tables (a trained checkpoint keeps them frozen)."""
    generator = torch.Generator().manual_seed(seed)
    state_dict = {
        key: torch.randn(shape, generator=generator) for key, shape in _fixture()["state_dict"]
    }
    for key, value in state_dict.items():
        if key.endswith("month_embed.weight"):
            state_dict[key] = month_table(value.shape[-1])
    return state_dict


def small_model(patch_embed: str = "conv", **kwargs) -> LatentMIM:
    encoder = dataclasses.replace(sizes.v1_encoder_config(_size()), patch_embed=patch_embed)
    decoder = sizes.v1_predictor_config(_size())
    return LatentMIMConfig(encoder=encoder, decoder=decoder, **kwargs).build()


def test_reference_weights_load_and_export_back_unchanged():
    reference = reference_style_state_dict()
    model = small_model()
    rc.load_reference_checkpoint(reference, model)
    exported = rc.reference_state_dict_of(model)

    assert set(exported) <= set(reference)
    for key, value in exported.items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0, msg=key)
    # Only the never-run part of the reference's target copy is left behind.
    dropped = sorted(set(reference) - set(exported))
    assert dropped and all(
        key.startswith(
            tuple(
                f"target_encoder.{part}"
                for part in ("blocks.", "norm.", "composite_encodings.", "project_and_aggregate.")
            )
        )
        for key in dropped
    ), dropped


def test_a_sharded_training_checkpoint_exports_like_the_model_it_holds(tmp_path):
    trained = small_model()
    rc.load_reference_checkpoint(reference_style_state_dict(seed=3), trained)
    optimizer = torch.optim.AdamW(trained.parameters())
    path = checkpoint.save_sharded(
        tmp_path, 4, checkpoint.ShardedState(trained, optimizer), {"trainer": {}}, {}
    )
    exported = rc.reference_state_dict_of_checkpoint(path, small_model())
    expected = rc.reference_state_dict_of(trained)
    assert exported.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=0, msg=key)


def test_attention_projections_are_fused_in_q_k_v_order():
    reference = reference_style_state_dict()
    model = small_model()
    rc.load_reference_checkpoint(reference, model)
    ours = model.state_dict()

    for part in ("weight", "bias"):
        qkv = ours[f"encoder.blocks.1.attn.qkv.{part}"]
        expected = [reference[f"encoder.blocks.1.attn.{n}.{part}"] for n in ("q", "k", "v")]
        for chunk, value in zip(qkv.chunk(3), expected, strict=True):
            assert torch.equal(chunk, value)
        assert torch.equal(
            ours[f"decoder.blocks.0.attn.q.{part}"], reference[f"decoder.blocks.0.attn.q.{part}"]
        )
        k, v = ours[f"decoder.blocks.0.attn.kv.{part}"].chunk(2)
        assert torch.equal(k, reference[f"decoder.blocks.0.attn.k.{part}"])
        assert torch.equal(v, reference[f"decoder.blocks.0.attn.v.{part}"])


def test_renamed_weights_land_on_their_modules():
    reference = reference_style_state_dict()
    model = small_model()
    rc.load_reference_checkpoint(reference, model)
    ours = model.state_dict()

    pairs = {
        "encoder.pooled_projection.weight": "encoder.project_and_aggregate.projection.0.weight",
        "encoder.norm.bias": "encoder.norm.bias",
        "encoder.encodings.channel_embeddings.landsat": (
            "encoder.composite_encodings.per_modality_channel_embeddings.landsat"
        ),
        "encoder.patch_embed.modalities.sentinel2_l2a.band_sets.2.proj.weight": (
            "encoder.patch_embeddings.per_modality_embeddings.sentinel2_l2a.sentinel2_l2a__2"
            ".proj.weight"
        ),
        "target.patch_embed.modalities.cdl.band_sets.0.proj.bias": (
            "target_encoder.patch_embeddings.per_modality_embeddings.cdl.cdl__0.proj.bias"
        ),
        "decoder.mask_token": "decoder.mask_token",
        "decoder.encoder_to_decoder.weight": "decoder.encoder_to_decoder_embed.weight",
        "decoder.to_output.bias": "decoder.to_output_embed.bias",
        "decoder.input_norm.weight": "decoder.input_norm.weight",
        "decoder.encodings.channel_embeddings.sentinel2_l2a": (
            "decoder.composite_encodings.per_modality_channel_embeddings.sentinel2_l2a"
        ),
        "decoder.blocks.0.mlp.fc2.weight": "decoder.blocks.0.mlp.fc2.weight",
    }
    for ours_key, reference_key in pairs.items():
        assert torch.equal(ours[ours_key], reference[reference_key]), ours_key


def _random_masked_sample(names: tuple[str, ...], pixels: int = 16) -> MaskedSample:
    generator = torch.Generator().manual_seed(1)
    data = {}
    for name in names:
        spec = modalities.get(name)
        steps = 2 if spec.is_multitemporal else 1
        data[name] = torch.randn(1, pixels, pixels, steps, spec.num_bands, generator=generator)
    timestamps = torch.tensor([[[1, 3, 2020], [1, 4, 2020]]])
    return MaskedSample.from_sample(Sample(data=data, timestamps=timestamps))


@pytest.mark.parametrize("patch_size", [8, 4, 1])
def test_a_conv_checkpoint_in_a_linear_patch_embedding_computes_the_same_tokens(patch_size):
    reference = reference_style_state_dict()
    conv, linear = small_model("conv"), small_model("linear")
    rc.load_reference_checkpoint(reference, conv)
    rc.load_reference_checkpoint(reference, linear)
    x = _random_masked_sample(("sentinel2_l2a", "openstreetmap_raster"))

    from_conv = conv.target_tokens(x, patch_size)
    from_linear = linear.target_tokens(x, patch_size)
    for name in x.data:
        # Same sums in another order: equal up to fp32 rounding (1e-5 of the largest token).
        scale = from_conv.tokens[name].abs().max().item()
        torch.testing.assert_close(
            from_linear.tokens[name], from_conv.tokens[name], rtol=0, atol=1e-5 * scale
        )
    # Exporting the linear model as a conv checkpoint gives back the original weights.
    exported = rc.reference_state_dict_of(linear, patch_embed="conv")
    key = "encoder.patch_embeddings.per_modality_embeddings.landsat.landsat__1.proj.weight"
    torch.testing.assert_close(exported[key], reference[key], rtol=0, atol=0)


def test_an_encoder_loads_the_encoder_part_of_a_whole_checkpoint(tmp_path):
    reference = reference_style_state_dict()
    path = tmp_path / "weights.pth"
    torch.save(reference, path)
    whole = small_model()
    rc.load_reference_checkpoint(path, whole)
    encoder = sizes.v1_encoder_config(_size()).build()
    rc.load_reference_checkpoint(path, encoder)
    predictor = sizes.v1_predictor_config(_size()).build()
    rc.load_reference_checkpoint(path, predictor)

    for key, value in encoder.state_dict().items():
        assert torch.equal(value, whole.encoder.state_dict()[key]), key
    for key, value in predictor.state_dict().items():
        assert torch.equal(value, whole.decoder.state_dict()[key]), key


def test_a_bare_reference_encoder_state_dict_loads_into_an_encoder():
    reference = reference_style_state_dict()
    bare = {k[len("encoder.") :]: v for k, v in reference.items() if k.startswith("encoder.")}
    encoder = sizes.v1_encoder_config(_size()).build()
    rc.load_reference_checkpoint(bare, encoder)
    assert torch.equal(encoder.norm.weight, reference["encoder.norm.weight"])


def test_an_ema_target_loads_the_whole_target_copy():
    reference = reference_style_state_dict()
    model = small_model(target="ema")
    rc.load_reference_checkpoint(reference, model)
    k = model.state_dict()["target.blocks.1.attn.qkv.weight"].chunk(3)[1]
    assert torch.equal(k, reference["target_encoder.blocks.1.attn.k.weight"])
    exported = rc.reference_state_dict_of(model)
    assert set(exported) == set(reference)


def test_missing_keys_are_named():
    reference = reference_style_state_dict()
    del reference["decoder.mask_token"]
    del reference["encoder.norm.weight"]
    with pytest.raises(rc.ReferenceCheckpointError, match="decoder.mask_token") as error:
        rc.load_reference_checkpoint(reference, small_model())
    assert error.value.missing == ["decoder.mask_token", "encoder.norm.weight"]


def test_unknown_reference_keys_are_named():
    reference = reference_style_state_dict()
    reference["encoder.register_tokens"] = torch.zeros(4, 32)
    reference["optimizer_step"] = torch.zeros(())
    with pytest.raises(rc.ReferenceCheckpointError, match="encoder.register_tokens") as error:
        rc.load_reference_checkpoint(reference, small_model())
    assert error.value.unexpected == ["encoder.register_tokens", "optimizer_step"]


def test_an_incomplete_attention_group_names_the_absent_projection():
    reference = reference_style_state_dict()
    del reference["encoder.blocks.0.attn.v.bias"]
    with pytest.raises(rc.ReferenceCheckpointError, match="cannot fuse") as error:
        rc.load_reference_checkpoint(reference, small_model())
    assert error.value.missing == ["blocks.0.attn.v.bias"]


def test_a_checkpoint_with_other_modalities_names_the_extra_and_absent_keys():
    reference = reference_style_state_dict()
    without_cdl = tuple(name for name in modalities.TRAINING_MODALITIES if name != "cdl")
    model = LatentMIMConfig.from_size(_size(), modalities=without_cdl).build()
    with pytest.raises(rc.ReferenceCheckpointError) as error:
        rc.load_reference_checkpoint(reference, model)
    assert "encoder.encodings.channel_embeddings.cdl" in error.value.unexpected
    assert "target.patch_embed.modalities.cdl.band_sets.0.proj.weight" in error.value.unexpected
    assert not error.value.missing


def test_a_checkpoint_of_another_tokenization_reports_shape_mismatches():
    reference = reference_style_state_dict()
    model = LatentMIMConfig.from_size(
        _size(), tokenization=modalities.SINGLE_BANDSET_TOKENIZATION
    ).build()
    with pytest.raises(rc.ReferenceCheckpointError, match="shape mismatches") as error:
        rc.load_reference_checkpoint(reference, model)
    assert any(
        item.startswith("encoder.encodings.channel_embeddings.sentinel2_l2a: checkpoint (3, 8)")
        for item in error.value.mismatched
    ), error.value.mismatched


def test_a_month_table_other_than_the_fixed_one_is_rejected():
    reference = reference_style_state_dict()
    reference["decoder.composite_encodings.month_embed.weight"][3, 0] += 0.01
    with pytest.raises(rc.ReferenceCheckpointError, match="month table"):
        rc.load_reference_checkpoint(reference, small_model())


def test_a_single_component_is_not_loaded_into_a_latent_mim():
    reference = reference_style_state_dict()
    bare = {k[len("encoder.") :]: v for k, v in reference.items() if k.startswith("encoder.")}
    with pytest.raises(rc.ReferenceCheckpointError, match="single component"):
        rc.load_reference_checkpoint(bare, small_model())


def test_a_failed_load_leaves_the_model_unchanged():
    reference = reference_style_state_dict()
    del reference["decoder.norm.bias"]
    model = small_model()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    with pytest.raises(rc.ReferenceCheckpointError):
        rc.load_reference_checkpoint(reference, model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_options_are_validated_with_their_allowed_values():
    with pytest.raises(ValueError, match="component must be one of"):
        rc.convert_reference_state_dict({}, component="trainer")
    with pytest.raises(ValueError, match="patch_embed must be one of"):
        rc.convert_reference_state_dict({}, patch_embed="mlp")
    with pytest.raises(TypeError, match="LatentMIM, Encoder or Predictor"):
        rc.load_reference_checkpoint({}, torch.nn.Linear(2, 2))
