"""Model sizes: parameter counts against the reference, and a contract over every size."""

import dataclasses
import math

import pytest
import torch

from models.encoder.per_modality_projection import EncoderWithPerModalityProjectionConfig
from models.latent_mim import sizes
from models.latent_mim.latent_mim import LatentMIMConfig
from models.modalities import modalities
from models.modalities.samples import MaskValue
from models.nn.testing import random_masked_sample
from models.predictor.per_modality_output import PredictorWithPerModalityOutputConfig

REFERENCE_COUNTS = {
    "nano": (1_361_024, 827_520),
    "base_shallow_decoder": (88_953_600, 29_541_120),
}
"""Encoder / decoder parameters of olmoearth-pretrain 0.1.2 built with the v1 recipe (nine
training modalities, Conv patch embeddings), measured with torch 2.13. The reference also counts
its frozen 12 x D/4 month table, which is a buffer here."""


def _counts(name: str, device: str) -> dict[str, int]:
    with torch.device(device):
        return LatentMIMConfig.from_size(name).build().parameter_counts()


@pytest.mark.parametrize("name, device", [("nano", "cpu"), ("base_shallow_decoder", "meta")])
def test_v1_parameter_counts_match_the_reference(name, device):
    counts = _counts(name, device)
    reference_encoder, reference_decoder = REFERENCE_COUNTS[name]
    size = sizes.MODEL_SIZES[name]
    assert abs(counts["encoder"] - reference_encoder) / reference_encoder < 0.005
    assert abs(counts["decoder"] - reference_decoder) / reference_decoder < 0.005
    # The whole difference is the month table the reference stores as a frozen parameter.
    assert counts["encoder"] + 12 * size.encoder_width // 4 == reference_encoder
    assert counts["decoder"] + 12 * size.decoder_width // 4 == reference_decoder


def test_v1_recipe_encodes_three_modalities_with_conv_patches():
    config = LatentMIMConfig.from_size("nano")
    assert config.encoder.encodable_modalities == ("sentinel2_l2a", "sentinel1", "landsat")
    assert config.encoder.supported_modalities == modalities.TRAINING_MODALITIES
    assert (config.encoder.patch_embed, config.encoder.max_patch_size) == ("conv", 8)
    assert (config.encoder.drop_path, config.decoder.drop_path) == (0.1, 0.0)
    assert config.target == "projection"
    with pytest.raises(ValueError, match="valid sizes are"):
        LatentMIMConfig.from_size("huge")


def test_v1_encoder_and_predictor_support_the_one_v1_patch_range():
    config = LatentMIMConfig.from_size("base_shallow_decoder")
    v1_range = (sizes.V1_MIN_PATCH_SIZE, sizes.V1_MAX_PATCH_SIZE)
    assert v1_range == (1, 8)
    assert (config.encoder.min_patch_size, config.encoder.max_patch_size) == v1_range
    assert config.decoder.max_patch_size == sizes.V1_MAX_PATCH_SIZE


def _shrunk(size: sizes.ModelSize) -> sizes.ModelSize:
    """Same head counts at the smallest valid width (a multiple of 16 and of the heads, so at
    most 48 here) and at most 2 blocks: the same structure, fast on CPU."""
    return dataclasses.replace(
        size,
        encoder_width=math.lcm(16, size.encoder_heads),
        encoder_depth=min(size.encoder_depth, 2),
        decoder_width=math.lcm(16, size.decoder_heads),
        decoder_depth=min(size.decoder_depth, 2),
    )


SAMPLE = random_masked_sample(batch=2, size=4, steps=2, patch_size=2, seed=7)

VARIANTS = [(name, None) for name in sizes.MODEL_SIZES] + [
    ("nano", "per_modality_projection"),
    ("nano", "per_modality_output"),
]


def _step(name: str, variant: str | None):
    classes = {}
    if variant == "per_modality_projection":
        classes["encoder_class"] = EncoderWithPerModalityProjectionConfig
    if variant == "per_modality_output":
        classes["decoder_class"] = PredictorWithPerModalityOutputConfig
    torch.manual_seed(0)
    model = LatentMIMConfig.from_size(_shrunk(sizes.MODEL_SIZES[name]), **classes).build()
    out = model(SAMPLE, patch_size=2)
    target = model.target_tokens(SAMPLE, patch_size=2)
    loss = out.pooled.pow(2).mean()
    for name_, predicted, mask in out.decoded.items():
        decoder = mask == MaskValue.DECODER
        loss = loss + (predicted[decoder] - target.tokens[name_][decoder]).pow(2).mean()
    loss.backward()
    return model, loss


@pytest.mark.parametrize("name, variant", VARIANTS)
def test_every_trainable_parameter_learns_without_nans_and_runs_are_reproducible(name, variant):
    model, loss = _step(name, variant)
    assert torch.isfinite(loss)
    for parameter_name, parameter in model.named_parameters():
        if parameter_name.startswith("target."):
            assert not parameter.requires_grad and parameter.grad is None
            continue
        if not parameter.requires_grad:  # the online encoder's unused decode-only embeddings
            decode_only = model.encoder.config.decode_only_modalities
            assert parameter_name.startswith("encoder.") and parameter.grad is None
            assert any(f".{m}." in f"{parameter_name}." for m in decode_only), parameter_name
            continue
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    again, loss_again = _step(name, variant)
    assert torch.equal(loss, loss_again)
    for (_, a), (_, b) in zip(model.named_parameters(), again.named_parameters(), strict=True):
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad)


def test_resized_takes_the_sizes_shape_and_keeps_the_config_classes_and_other_fields():
    base = LatentMIMConfig.from_size(
        "base_shallow_decoder",
        encoder_class=EncoderWithPerModalityProjectionConfig,
        decoder_class=PredictorWithPerModalityOutputConfig,
    )
    nano = sizes.resized(base, "nano")
    reference = LatentMIMConfig.from_size("nano")
    assert type(nano.encoder) is EncoderWithPerModalityProjectionConfig
    assert type(nano.decoder) is PredictorWithPerModalityOutputConfig
    for part in ("encoder", "decoder"):
        for field in ("width", "depth", "num_heads", "mlp_ratio"):
            assert getattr(getattr(nano, part), field) == getattr(getattr(reference, part), field)
    assert nano.decoder.encoder_width == nano.decoder.output_width == 128
    # Nothing but the shape moved: put base's shape back and it is base again.
    assert dataclasses.replace(nano.encoder, width=768, depth=12, num_heads=12) == base.encoder
    assert (
        dataclasses.replace(
            nano.decoder, width=768, depth=4, num_heads=12, encoder_width=768, output_width=768
        )
        == base.decoder
    )
    assert (nano.target, nano.ema_decay) == (base.target, base.ema_decay)


def test_resized_to_an_unknown_size_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown model size 'nanoo'; valid sizes are .*'nano'"):
        sizes.resized(LatentMIMConfig.from_size("nano"), "nanoo")
