"""PredictorV12: v1 exactly when RoPE and qk-norm are off; with RoPE, predictions depend on
relative positions only; qk-norm; config errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.modalities import modalities
from models.modalities.samples import MaskValue, TokensAndMasks
from models.nn import rope
from models.nn.testing import random_timestamps
from models.predictor.predictor import PredictorConfig
from models.predictor.v1_2 import PredictorV12, PredictorV12Config

NAMES = ("sentinel2_l2a", "sentinel1", "landsat", "worldcover", "cdl")
SINGLE = modalities.SINGLE_BANDSET_TOKENIZATION


def _predictor(seed: int = 0, **overrides) -> PredictorV12:
    fields = dict(width=32, depth=2, num_heads=2, encoder_width=32, supported_modalities=NAMES)
    fields.update(overrides)
    torch.manual_seed(seed)
    return PredictorV12Config(**fields).build()


def _encoded(seed: int = 0):
    """Random encoder tokens [B, h, w, T, S, 32] and masks with every mask value present."""
    generator = torch.Generator().manual_seed(seed)
    tokens, masks = {}, {}
    for spec in SINGLE.specs(NAMES):
        steps = 3 if spec.is_multitemporal else 1
        shape = (2, 2, 3, steps, spec.num_band_sets)
        tokens[spec.name] = torch.randn(*shape, 32, generator=generator)
        masks[spec.name] = torch.randint(0, 4, shape, generator=generator).to(torch.int8)
    masks["sentinel2_l2a"].view(2, -1)[:, :2] = torch.tensor(
        [MaskValue.ONLINE_ENCODER, MaskValue.DECODER], dtype=torch.int8
    )
    return TokensAndMasks(tokens=tokens, masks=masks), random_timestamps(2, 3, generator)


def _decoded(predictor, encoded, timestamps):
    out = predictor(encoded, timestamps, patch_size=2)
    return {
        name: tokens[out.masks[name] == MaskValue.DECODER] for name, tokens in out.tokens.items()
    }


def test_defaults_are_the_v1_2_recipe():
    config = PredictorV12Config(width=32, depth=1, num_heads=2, encoder_width=32)
    assert config.rope == rope.RopeConfig(kind="rope_3d_mixed")
    assert (config.qk_norm, config.tokenization) == (False, SINGLE)


def test_without_rope_and_qk_norm_it_is_the_v1_predictor():
    ours = _predictor(rope=None)
    fields = {f.name: getattr(ours.config, f.name) for f in dataclasses.fields(PredictorConfig)}
    v1 = PredictorConfig(**fields).build()
    v1.load_state_dict(ours.state_dict(), strict=True)
    encoded, timestamps = _encoded()
    a, b = _decoded(ours, encoded, timestamps), _decoded(v1, encoded, timestamps)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", rope.ROPE_KINDS)
def test_predictions_depend_on_time_through_offsets_only(kind):
    predictor = _predictor(rope=rope.RopeConfig(kind=kind))
    encoded, timestamps = _encoded()
    later = timestamps + torch.tensor([0, 0, 2])  # two years later, same months
    a, b = _decoded(predictor, encoded, timestamps), _decoded(predictor, encoded, later)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=0)


def test_rope_and_qk_norm_parameters_learn():
    predictor = _predictor(qk_norm=True)
    encoded, timestamps = _encoded()
    loss = sum(v.square().sum() for v in _decoded(predictor, encoded, timestamps).values())
    loss.backward()
    for block in predictor.blocks:
        assert block.attn.rope.freqs.grad.abs().sum() > 0
        assert block.attn.q_norm.weight.grad.abs().sum() > 0
        assert block.attn.k_norm.bias.grad.abs().sum() > 0


def test_a_head_dim_rope_cannot_split_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="PredictorV12Config: rope_3d_mixed needs a head dim"):
        PredictorV12Config(width=48, depth=1, num_heads=8, encoder_width=48)
