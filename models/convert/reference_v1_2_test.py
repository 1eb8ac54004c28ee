"""The v1.2 converter without the reference: names, round trips, the dead target copy, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.convert import reference_checkpoint, reference_v1_2
from models.latent_mim import sizes
from models.latent_mim.v1_2 import LatentMIMV12Config

SMALL = sizes.ModelSize(32, 2, 2, 32, 1, 2)


def _model(target: str = "projection", seed: int = 0):
    config = LatentMIMV12Config.from_size(SMALL, target=target)
    encoder = dataclasses.replace(config.encoder, num_register_tokens=2, qk_norm=True)
    decoder = dataclasses.replace(config.decoder, qk_norm=True)
    torch.manual_seed(seed)
    return dataclasses.replace(config, encoder=encoder, decoder=decoder).build()


def test_export_writes_the_reference_names_of_the_v1_2_parameters():
    model = _model()
    exported = reference_v1_2.reference_v1_2_state_dict_of(model)
    ours = model.state_dict()
    assert torch.equal(
        exported["encoder.blocks.1.attn.rope_mixed_freqs"], ours["encoder.blocks.1.attn.rope.freqs"]
    )
    assert torch.equal(exported["encoder.register_tokens"], ours["encoder.register_tokens"])
    assert torch.equal(
        exported["decoder.blocks.0.attn.k_norm.bias"], ours["decoder.blocks.0.attn.k_norm.bias"]
    )
    assert not any("rope.freqs" in key for key in exported)
    assert not any(key.startswith("target_encoder.blocks") for key in exported)


@pytest.mark.parametrize("target", ["projection", "ema"])
def test_export_then_load_gives_back_every_weight(target):
    source, destination = _model(target, seed=0), _model(target, seed=1)
    exported = reference_v1_2.reference_v1_2_state_dict_of(source)
    reference_v1_2.load_reference_v1_2_checkpoint(exported, destination)
    for key, value in source.state_dict().items():
        assert torch.equal(destination.state_dict()[key], value), key


def test_a_projection_target_drops_the_reference_target_copy_of_v1_2_parameters():
    model = _model()
    exported = reference_v1_2.reference_v1_2_state_dict_of(model)
    # The reference keeps a full (never run) encoder copy as its target: its registers, RoPE
    # frequencies and qk-norms must not reach our patch-embeddings-only target.
    exported["target_encoder.register_tokens"] = torch.zeros(2, 32)
    exported["target_encoder.blocks.0.attn.rope_mixed_freqs"] = torch.zeros(3, 2, 8)
    exported["target_encoder.blocks.0.attn.q_norm.weight"] = torch.zeros(16)
    converted = reference_v1_2.convert_reference_v1_2_state_dict(exported)
    assert not any(key.startswith("target.") and "patch_embed" not in key for key in converted)
    reference_v1_2.load_reference_v1_2_checkpoint(exported, model)


def test_bare_encoder_and_predictor_state_dicts_convert():
    model = _model()
    encoder_sd = reference_v1_2.reference_v1_2_state_dict_of(model.encoder)
    assert "register_tokens" in encoder_sd and "blocks.0.attn.rope_mixed_freqs" in encoder_sd
    reference_v1_2.load_reference_v1_2_checkpoint(encoder_sd, model.encoder)
    predictor_sd = reference_v1_2.reference_v1_2_state_dict_of(model.decoder)
    assert "blocks.0.attn.q_norm.weight" in predictor_sd
    reference_v1_2.load_reference_v1_2_checkpoint(predictor_sd, model.decoder)


def test_a_checkpoint_without_the_v1_2_parameters_is_refused_naming_them():
    model = _model()
    exported = reference_v1_2.reference_v1_2_state_dict_of(model)
    del exported["encoder.register_tokens"]
    with pytest.raises(reference_checkpoint.ReferenceCheckpointError, match="register_tokens"):
        reference_v1_2.load_reference_v1_2_checkpoint(exported, model)
