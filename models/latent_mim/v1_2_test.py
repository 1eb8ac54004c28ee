"""The v1.2 model: published parameter counts, the recipe's options, and one training step."""

from __future__ import annotations

import pytest
import torch

from models.encoder.v1_2 import EncoderV12
from models.latent_mim import sizes
from models.latent_mim.v1_1 import LatentMIMV11
from models.latent_mim.v1_2 import V1_2_PUBLISHED_COUNTS, V1_2_SIZES, LatentMIMV12Config
from models.modalities import modalities
from models.modalities.samples import MaskValue
from models.nn.testing import random_masked_sample
from models.predictor.v1_2 import PredictorV12


@pytest.mark.parametrize("name", sorted(V1_2_PUBLISHED_COUNTS))
def test_parameter_counts_are_within_half_a_percent_of_the_published_ones(name):
    with torch.device("meta"):
        counts = LatentMIMV12Config.from_size(name).build().parameter_counts()
    encoder, decoder = V1_2_PUBLISHED_COUNTS[name]
    print(f"{name}: ours {counts}, published {encoder} / {decoder}")
    assert abs(counts["encoder"] - encoder) / encoder < 0.005
    if decoder is not None:
        assert abs(counts["decoder"] - decoder) / decoder < 0.005


def test_the_recipe_is_v1_1_with_rope_3d_mixed_in_encoder_and_decoder():
    config = LatentMIMV12Config.from_size("small_shallow_decoder")
    assert "small_shallow_decoder" in V1_2_SIZES
    assert (config.encoder.width, config.encoder.depth, config.decoder.depth) == (384, 12, 4)
    for part in (config.encoder, config.decoder):
        assert (part.rope.kind, part.rope.mixed_base) == ("rope_3d_mixed", 1e4)
        assert part.rope.temporal_scale == pytest.approx(1 / 30)
        assert part.tokenization == modalities.SINGLE_BANDSET_TOKENIZATION
        assert part.qk_norm is False
    assert config.encoder.num_register_tokens == 0
    assert (config.encoder.band_dropout_rate, config.encoder.patch_embed) == (0.2, "linear")
    assert LatentMIMV12Config.from_size("nano", rope=None).decoder.rope is None


def test_one_training_step_reaches_every_trainable_parameter():
    size = sizes.ModelSize(32, 2, 2, 32, 2, 2)
    torch.manual_seed(0)
    model = LatentMIMV12Config.from_size(size).build()
    assert isinstance(model, LatentMIMV11)
    assert isinstance(model.encoder, EncoderV12) and isinstance(model.decoder, PredictorV12)
    x = random_masked_sample(tokenization=modalities.SINGLE_BANDSET_TOKENIZATION, steps=2)
    out = model(x, patch_size=2)
    target = model.target_tokens(x, patch_size=2)
    loss = out.pooled.square().mean()
    for name, predicted, mask in out.decoded.items():
        decoder = mask == MaskValue.DECODER
        loss = loss + (predicted[decoder] - target.tokens[name][decoder]).square().mean()
    loss.backward()
    assert torch.isfinite(loss)
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
