"""LatentMIMV11: the v1.1 model config by size, band dropout on for the online encoder only."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.config import serialization
from models.encoder.v1_1 import EncoderV11Config
from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIMConfig
from models.latent_mim.v1_1 import LatentMIMV11, LatentMIMV11Config
from models.losses.info_nce import InfoNCELossConfig
from models.losses.patch_discrimination import MaskedNegativesPatchDiscriminationLossConfig
from models.modalities import modalities
from models.modalities.samples import MaskValue
from models.nn.testing import random_masked_sample

SINGLE = modalities.SINGLE_BANDSET_TOKENIZATION


def _model(seed: int = 0, **kwargs) -> LatentMIMV11:
    torch.manual_seed(seed)
    return LatentMIMV11Config.from_size("nano", **kwargs).build()


def test_from_size_is_v1_shape_with_v1_1_encoder_and_tokenization():
    config = LatentMIMV11Config.from_size("nano")
    v1 = LatentMIMConfig.from_size("nano")
    assert isinstance(config.encoder, EncoderV11Config)
    assert config.encoder.tokenization == SINGLE == config.decoder.tokenization
    assert config.encoder.resolved_pixel_hidden_width == 12  # released nano
    for field in ("width", "depth", "num_heads", "mlp_ratio", "drop_path"):
        assert getattr(config.encoder, field) == getattr(v1.encoder, field)
    base = LatentMIMV11Config.from_size("base_shallow_decoder")
    assert base.encoder.resolved_pixel_hidden_width == 64


def test_resizing_keeps_the_v1_1_classes_and_the_released_hidden_width():
    resized = sizes.resized(LatentMIMV11Config.from_size("base_shallow_decoder"), "nano")
    assert isinstance(resized, LatentMIMV11Config)
    assert resized.encoder.resolved_pixel_hidden_width == 12


def test_config_round_trips_through_serialization_with_its_classes():
    config = LatentMIMV11Config.from_size("tiny_shallow_decoder", target="ema")
    back = serialization.from_dict(serialization.to_dict(config))
    assert back == config
    assert type(back) is LatentMIMV11Config and type(back.encoder) is EncoderV11Config


def test_band_dropout_only_on_modalities_present():
    config = LatentMIMV11Config.from_size(
        "nano", modalities=("sentinel2_l2a", "sentinel1", "worldcover")
    )
    assert config.encoder.band_dropout_modalities == ("sentinel2_l2a",)


def test_rejects_a_v1_encoder():
    v1 = LatentMIMConfig.from_size("nano", tokenization=SINGLE)
    with pytest.raises(ValueError, match="encoder must be an EncoderV11Config"):
        LatentMIMV11Config(encoder=v1.encoder, decoder=v1.decoder)


def test_online_encoder_drops_bands_and_the_target_never_does():
    model = _model().train()
    online = model.encoder.patch_embed.band_dropouts()
    assert set(online) == {"sentinel2_l2a", "landsat"}
    assert all(dropout.enabled for dropout in online.values())
    assert all(not d.enabled for d in model.target.patch_embed.band_dropouts().values())
    x = random_masked_sample(patch_size=2, tokenization=SINGLE, steps=2)
    torch.manual_seed(0)
    first = model.target_tokens(x, 2)
    torch.manual_seed(1)
    second = model.target_tokens(x, 2)
    for name in first.tokens:
        assert torch.equal(first.tokens[name], second.tokens[name])


def test_training_forward_is_seeded_and_eval_sees_every_band():
    config = LatentMIMV11Config.from_size("nano")
    # drop_path 0: band dropout is then the only randomness of a training forward.
    config = dataclasses.replace(config, encoder=dataclasses.replace(config.encoder, drop_path=0.0))
    model = config.build().train()
    x = random_masked_sample(patch_size=2, tokenization=SINGLE, steps=2)
    torch.manual_seed(5)
    a = model(x, 2).pooled
    torch.manual_seed(5)
    assert torch.equal(model(x, 2).pooled, a)
    torch.manual_seed(6)
    assert not torch.equal(model(x, 2).pooled, a)
    model.eval()
    torch.manual_seed(5)
    evaluated = model(x, 2).pooled
    torch.manual_seed(6)
    assert torch.equal(model(x, 2).pooled, evaluated)


def test_decoded_positions_have_predictions_for_every_modality():
    model = _model()
    x = random_masked_sample(patch_size=2, tokenization=SINGLE, steps=2)
    out = model(x, 2)
    for name, tokens, mask in out.decoded.items():
        decoded = mask == MaskValue.DECODER
        assert decoded.any(), name
        assert tokens[decoded].shape[-1] == 128


def test_a_training_step_runs_on_the_test_device_with_band_dropout(device):
    """Forward, target, loss and backward on the `device` fixture (CUDA under
    TERRA_LAB_TEST_DEVICE=cuda): the dropout masks are drawn where the data lives and the
    per-pixel layers of the online encoder get a gradient."""
    model = _model().to(device).train()
    x = random_masked_sample(patch_size=2, tokenization=SINGLE, steps=2).to(device)
    drawn = []
    for dropout in model.encoder.patch_embed.band_dropouts().values():
        original = dropout.draw_keep_mask

        def record(batch, bands, where, original=original):
            keep = original(batch, bands, where)
            drawn.append(keep.device)
            return keep

        dropout.draw_keep_mask = record
    output = model(x, 2)
    target = model.target_tokens(x, 2)
    loss = MaskedNegativesPatchDiscriminationLossConfig().build()(output.decoded, target)
    loss = loss + InfoNCELossConfig(weight=0.05).build()(output.pooled, output.pooled.flip(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert len(drawn) == 2 and all(where.type == device.type for where in drawn)
    pixel = model.encoder.patch_embed.modalities["sentinel2_l2a"].band_sets[0].pixel_proj
    assert pixel.weight.grad is not None and pixel.weight.grad.abs().sum() > 0
    target_pixel = model.target.patch_embed.modalities["sentinel2_l2a"].band_sets[0].pixel_proj
    assert target_pixel.weight.grad is None
