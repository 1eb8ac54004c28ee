"""LatentMIM: config checks, the frozen projection target, target tokens, EMA updates."""

import pytest
import torch

from models.latent_mim.latent_mim import FrozenPatchTarget, LatentMIM, LatentMIMConfig
from models.latent_mim.sizes import ModelSize
from models.modalities import modalities
from models.modalities.samples import MaskValue
from models.nn.testing import random_masked_sample

TINY = ModelSize(32, 1, 2, 16, 1, 2)
NAMES = ("sentinel2_l2a", "sentinel1", "worldcover", "srtm")


def _config(**kwargs) -> LatentMIMConfig:
    return LatentMIMConfig.from_size(TINY, modalities=NAMES, **kwargs)


def _model(seed=0, **kwargs) -> LatentMIM:
    torch.manual_seed(seed)
    return _config(**kwargs).build()


def _sample(seed=0):
    return random_masked_sample(batch=2, size=4, steps=2, patch_size=2, names=NAMES, seed=seed)


def test_config_rejects_mismatched_encoder_and_decoder():
    config = _config()
    with pytest.raises(ValueError, match="supported_modalities .* must be the same"):
        LatentMIMConfig(encoder=config.encoder, decoder=_config_for(("sentinel2_l2a",)).decoder)
    with pytest.raises(ValueError, match="target must be one of"):
        _config(target="deep")
    with pytest.raises(ValueError, match=r"ema_decay must be \(start, end\)"):
        _config(target="ema", ema_decay=(0.9, 1.1))


def _config_for(names):
    return LatentMIMConfig.from_size(TINY, modalities=names)


def test_projection_target_copies_only_the_patch_embeddings_and_is_frozen():
    model = _model()
    assert isinstance(model.target, FrozenPatchTarget)
    assert not any("blocks" in name for name, _ in model.target.named_parameters())
    counts = model.parameter_counts()
    assert counts["target"] == sum(p.numel() for p in model.encoder.patch_embed.parameters())
    assert all(not p.requires_grad for p in model.target.parameters())


def test_target_tokens_are_unmasked_patch_embeddings_with_the_views_masks():
    model = _model()
    sample = _sample()
    target = model.target_tokens(sample, patch_size=2)
    assert target.modality_names == modalities.canonical_order(NAMES)
    unmasked = model.encoder.embed_patches_only(sample.unmask(), patch_size=2)
    for name in NAMES:
        torch.testing.assert_close(target.tokens[name], unmasked.tokens[name])
        assert torch.equal(target.masks[name], sample.masks[name][:, ::2, ::2])
        assert not target.tokens[name].requires_grad
    decoder = target.masks["worldcover"] == MaskValue.DECODER
    assert decoder.any() and torch.all(target.tokens["worldcover"][decoder] != 0)


def test_forward_returns_latent_predictions_and_pooled_vector_without_a_loss():
    model = _model()
    out = model(_sample(), patch_size=2)
    assert out.pooled.shape == (2, 32)
    assert out.decoded.tokens["srtm"].shape == (2, 2, 2, 1, 1, 32)
    assert all(torch.equal(out.decoded.masks[n], out.latent.masks[n]) for n in NAMES)


def test_optimizer_steps_move_the_encoder_but_not_the_target():
    model = _model()
    before = [p.clone() for p in model.target.parameters()]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sample = _sample()
    out = model(sample, patch_size=2)
    target = model.target_tokens(sample, patch_size=2)
    loss = sum(
        (out.decoded.tokens[n] - target.tokens[n])[target.masks[n] == MaskValue.DECODER]
        .pow(2)
        .mean()
        for n in NAMES
    )
    loss.backward()
    optimizer.step()
    model.update_target(step=10, max_steps=100)  # no-op for the projection target
    assert all(torch.equal(a, b) for a, b in zip(before, model.target.parameters(), strict=True))
    moved = model.encoder.patch_embed.modalities["sentinel2_l2a"].band_sets[0].proj.weight
    assert not torch.equal(moved, model.target.patch_embed.modalities["sentinel2_l2a"]
                           .band_sets[0].proj.weight)  # fmt: skip


def test_ema_target_follows_a_linear_decay_ramp():
    model = _model(target="ema", ema_decay=(0.5, 1.0))
    assert isinstance(model.target, type(model.encoder))
    with torch.no_grad():
        for parameter in model.encoder.parameters():
            parameter.add_(1.0)
    online = [p.clone() for p in model.encoder.parameters()]
    target = [p.clone() for p in model.target.parameters()]
    model.update_target(step=50, max_steps=100)  # decay = 0.5 + 50 / 100 * 0.5 = 0.75
    for t_before, o, t_after in zip(target, online, model.target.parameters(), strict=True):
        torch.testing.assert_close(t_after, 0.75 * t_before + 0.25 * o)
    model.update_target(step=100, max_steps=100)  # decay 1.0: frozen at the end of the ramp
    for t_before, t_after in zip(target, model.target.parameters(), strict=True):
        assert not torch.equal(t_before, t_after)


def test_ema_encoder_targets_use_the_full_copy_for_encoded_modalities_only():
    model = _model(target="ema", ema_target_output="encoder")
    sample = _sample()
    target = model.target_tokens(sample, patch_size=2)
    full = model.target(sample.unmask(), patch_size=2).tokens_and_masks.tokens
    torch.testing.assert_close(target.tokens["sentinel1"], full["sentinel1"])
    raw = model.target.patch_embed(sample.unmask(), 2, ["worldcover"]).tokens["worldcover"]
    torch.testing.assert_close(target.tokens["worldcover"], raw)


def test_train_mode_keeps_the_target_in_eval_mode():
    model = _model(target="ema").train()
    assert model.encoder.training and model.decoder.training and not model.target.training
