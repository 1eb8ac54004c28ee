"""The per-modality output predictor variant: structure, gradients, equivalence to the base."""

import torch

from models.modalities.samples import MaskValue, TokensAndMasks
from models.nn.testing import random_masked_sample
from models.predictor.per_modality_output import (
    PredictorWithPerModalityOutput,
    PredictorWithPerModalityOutputConfig,
)
from models.predictor.predictor import Predictor, PredictorConfig

NAMES = ("sentinel2_l2a", "landsat", "srtm")
FIELDS = dict(width=16, depth=1, num_heads=2, encoder_width=32, supported_modalities=NAMES)


def _latent() -> tuple[TokensAndMasks, torch.Tensor]:
    sample = random_masked_sample(batch=2, size=4, steps=2, patch_size=2, names=NAMES)
    generator = torch.Generator().manual_seed(0)
    tokens = {}
    for name, mask in sample.masks.items():
        shape = mask[:, ::2, ::2].shape
        tokens[name] = torch.randn(*shape, 32, generator=generator)
    masks = {name: mask[:, ::2, ::2] for name, mask in sample.masks.items()}
    return TokensAndMasks(tokens, masks), sample.timestamps


def _variant(seed=0) -> PredictorWithPerModalityOutput:
    torch.manual_seed(seed)
    return PredictorWithPerModalityOutputConfig(**FIELDS).build()


def test_config_builds_the_variant_with_one_head_per_modality_and_no_shared_head():
    predictor = _variant()
    assert type(predictor) is PredictorWithPerModalityOutput
    assert tuple(predictor.output_heads) == NAMES
    assert not hasattr(predictor, "to_output")


def test_forward_shapes_and_gradients_reach_every_head():
    predictor = _variant()
    latent, timestamps = _latent()
    out = predictor(latent, timestamps, patch_size=2)
    assert out.tokens["sentinel2_l2a"].shape == (2, 2, 2, 2, 3, 32)
    assert out.tokens["srtm"].shape == (2, 2, 2, 1, 1, 32)
    total = sum(t[m == MaskValue.DECODER].sum() for (_, t, m) in out.items())
    total.backward()
    for name, parameter in predictor.output_heads.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_heads_copied_from_the_shared_head_reproduce_the_base_predictor():
    torch.manual_seed(0)
    base = Predictor(PredictorConfig(**FIELDS))
    variant = _variant(seed=1)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("to_output.")}
    variant.load_state_dict(state, strict=False)
    with torch.no_grad():
        for head in variant.output_heads.values():
            head.weight.copy_(base.to_output.weight)
            head.bias.copy_(base.to_output.bias)
    latent, timestamps = _latent()
    expected = base(latent, timestamps, patch_size=2)
    actual = variant(latent, timestamps, patch_size=2)
    for name in NAMES:
        torch.testing.assert_close(actual.tokens[name], expected.tokens[name])
    with torch.no_grad():
        variant.output_heads["landsat"].bias.add_(1.0)
    moved = variant(latent, timestamps, patch_size=2)
    assert torch.equal(moved.tokens["srtm"], actual.tokens["srtm"])
    assert not torch.equal(moved.tokens["landsat"], actual.tokens["landsat"])
