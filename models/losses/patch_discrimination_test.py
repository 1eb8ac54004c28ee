"""Patch discrimination losses: values, token selection, averaging, gradients, masked negatives."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.losses.patch_discrimination import (
    MaskedNegativesPatchDiscriminationLoss,
    MaskedNegativesPatchDiscriminationLossConfig,
    ModalityPatchDiscriminationLoss,
    ModalityPatchDiscriminationLossConfig,
    PatchDiscriminationLoss,
    PatchDiscriminationLossConfig,
    patch_discrimination,
)
from models.modalities.samples import MaskValue, TokensAndMasks

DEC = int(MaskValue.DECODER)


def _orthonormal(n, width, seed=0):
    q, _ = torch.linalg.qr(torch.randn(width, n, generator=torch.Generator().manual_seed(seed)))
    return q.T.contiguous()  # [n, width], orthonormal rows


def _single(pred_ND, target_ND, mask_N=None, name="sentinel1"):
    """One sample, one modality laid out as [1, h=N, w=1, T=1, S=1, D]."""
    n, width = pred_ND.shape
    if mask_N is None:
        mask_N = torch.full((n,), DEC, dtype=torch.int8)
    shape = (1, n, 1, 1, 1)
    return (
        TokensAndMasks({name: pred_ND.reshape(*shape, width)}, {name: mask_N.reshape(shape)}),
        TokensAndMasks({name: target_ND.reshape(*shape, width)}, {name: mask_N.reshape(shape)}),
    )


def _explicit_sample_loss(pred_ND, target_ND, tau, excluded_NN=None):
    """Row-by-row 2 tau * CE with the diagonal as label, written plainly."""
    p = F.normalize(pred_ND.double(), dim=-1)
    t = F.normalize(target_ND.double(), dim=-1)
    losses = []
    for i in range(p.shape[0]):
        logits = (p[i] @ t.T) / tau
        if excluded_NN is not None:
            logits = logits[~excluded_NN[i]]
            positive = int((~excluded_NN[i])[:i].sum())
        else:
            positive = i
        losses.append(2 * tau * (torch.logsumexp(logits, 0) - logits[positive]))
    return torch.stack(losses).mean()


def test_random_tokens_give_about_two_tau_log_n():
    generator = torch.Generator().manual_seed(0)
    for n, tau, tolerance in ((16, 1.0, 0.01), (64, 0.1, 0.05)):
        pred, target = torch.randn(2, n, 1024, generator=generator)
        loss = ModalityPatchDiscriminationLoss(tau=tau)(*_single(pred, target))
        # Random directions in 1024-d have cosine ~ N(0, 1/1024): logits spread 1/(32 tau).
        assert abs(loss / (2 * tau) - math.log(n)) / math.log(n) < tolerance, (n, tau, loss)


def test_predictions_equal_to_distinct_targets_give_near_zero():
    target = _orthonormal(8, 16)
    loss = ModalityPatchDiscriminationLoss(tau=0.1)(*_single(target.clone(), target))
    # Diagonal logit 10, others 0: 2 tau * log(1 + 7 e^-10).
    expected = 0.2 * math.log(1 + 7 * math.exp(-10))
    # fp32 logsumexp near 10 resolves ~1e-6 (the loss is 2 tau * (10.0003 - 10)).
    assert loss.item() == pytest.approx(expected, abs=2e-6)
    assert loss.item() < 1e-4


def test_value_matches_an_explicit_row_by_row_computation():
    generator = torch.Generator().manual_seed(1)
    pred, target = torch.randn(2, 6, 8, generator=generator)
    loss = ModalityPatchDiscriminationLoss(tau=0.1)(*_single(pred, target))
    assert loss.item() == pytest.approx(_explicit_sample_loss(pred, target, 0.1).item(), abs=1e-6)


def _batch(seed=0, batch=3, width=8):
    generator = torch.Generator().manual_seed(seed)
    tokens = {
        "sentinel2_l2a": torch.randn(batch, 2, 2, 2, 3, width, generator=generator),
        "srtm": torch.randn(batch, 3, 3, 1, 1, width, generator=generator),
    }
    targets = {name: torch.randn(t.shape, generator=generator) for name, t in tokens.items()}
    masks = {
        name: torch.randint(0, 4, t.shape[:-1], generator=generator).to(torch.int8)
        for name, t in tokens.items()
    }
    for mask in masks.values():  # every sample decodes >= 2 tokens of each modality
        flat = mask.view(batch, -1)
        flat[:, :2] = DEC
    return tokens, targets, masks


def test_only_decoder_tokens_matter():
    tokens, targets, masks = _batch()
    loss_fn = ModalityPatchDiscriminationLoss()
    before = loss_fn(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
    generator = torch.Generator().manual_seed(5)
    for name in tokens:
        other = masks[name] != DEC
        tokens[name][other] = torch.randn(tokens[name][other].shape, generator=generator)
        targets[name][other] = torch.randn(targets[name][other].shape, generator=generator)
    after = loss_fn(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
    assert torch.equal(before, after)
    # ... while changing a decoder token does change it.
    tokens["srtm"][masks["srtm"] == DEC] += 1.0
    assert not torch.equal(
        before, loss_fn(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
    )


def test_loss_is_mean_over_samples_then_sum_over_modalities():
    tokens, targets, masks = _batch(batch=2)
    loss_fn = ModalityPatchDiscriminationLoss()
    total = loss_fn(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
    expected = 0.0
    for name in tokens:
        width = tokens[name].shape[-1]
        per_sample = []
        for b in range(2):
            decoded = masks[name][b] == DEC
            if decoded.sum() == 0:
                continue
            pred = tokens[name][b][decoded].reshape(-1, width)
            target = targets[name][b][decoded].reshape(-1, width)
            per_sample.append(_explicit_sample_loss(pred, target, 0.1))
        expected += torch.stack(per_sample).mean()
    assert total.item() == pytest.approx(float(expected), abs=1e-6)


def test_samples_without_decoder_tokens_are_left_out_of_the_mean():
    tokens, targets, masks = _batch(batch=3)
    masks = {name: m.clone() for name, m in masks.items()}
    masks["sentinel2_l2a"][1] = int(MaskValue.TARGET_ONLY)
    loss_fn = ModalityPatchDiscriminationLoss()
    with_empty = loss_fn.modality_losses(
        TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks)
    )["sentinel2_l2a"]
    keep = [0, 2]
    sub = {name: t[keep] for name, t in tokens.items()}
    sub_targets = {name: t[keep] for name, t in targets.items()}
    sub_masks = {name: m[keep] for name, m in masks.items()}
    without = loss_fn.modality_losses(
        TokensAndMasks(sub, sub_masks), TokensAndMasks(sub_targets, sub_masks)
    )["sentinel2_l2a"]
    assert with_empty.item() == pytest.approx(without.item(), abs=1e-6)


def test_no_decoder_tokens_anywhere_gives_a_zero_that_backpropagates():
    tokens, targets, masks = _batch()
    tokens = {name: t.requires_grad_() for name, t in tokens.items()}
    masks = {name: torch.zeros_like(m) for name, m in masks.items()}
    loss = ModalityPatchDiscriminationLoss()(
        TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks)
    )
    assert loss.item() == 0.0 and loss.dtype == torch.float32
    loss.backward()
    assert (tokens["srtm"].grad == 0).all()


def test_gradient_reaches_decoded_predictions_only_and_never_the_targets():
    tokens, targets, masks = _batch()
    tokens = {name: t.requires_grad_() for name, t in tokens.items()}
    targets = {name: t.requires_grad_() for name, t in targets.items()}
    loss = ModalityPatchDiscriminationLoss()(
        TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks)
    )
    loss.backward()
    for name in tokens:
        assert targets[name].grad is None
        grad_norm = tokens[name].grad.norm(dim=-1)
        assert (grad_norm[masks[name] != DEC] == 0).all()
        assert (grad_norm[masks[name] == DEC] > 0).any()


def test_permuting_predictions_against_targets_raises_the_loss():
    target = _orthonormal(6, 16)
    loss_fn = ModalityPatchDiscriminationLoss()
    aligned = loss_fn(*_single(target.clone(), target))
    shuffled = loss_fn(*_single(target[torch.tensor([1, 0, 2, 3, 5, 4])], target))
    assert shuffled > aligned + 1.0
    # Permuting predictions and targets together changes nothing.
    generator = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 6, 8, generator=generator)
    order = torch.randperm(6, generator=generator)
    assert loss_fn(*_single(pred[order], target[order])).item() == pytest.approx(
        loss_fn(*_single(pred, target)).item(), abs=1e-6
    )


def test_low_precision_inputs_are_computed_in_fp32():
    tokens, targets, masks = _batch()
    half = {name: t.to(torch.bfloat16) for name, t in tokens.items()}
    half_targets = {name: t.to(torch.bfloat16) for name, t in targets.items()}
    loss_fn = ModalityPatchDiscriminationLoss()
    low = loss_fn(TokensAndMasks(half, masks), TokensAndMasks(half_targets, masks))
    upcast = loss_fn(
        TokensAndMasks({n: t.float() for n, t in half.items()}, masks),
        TokensAndMasks({n: t.float() for n, t in half_targets.items()}, masks),
    )
    assert low.dtype == torch.float32
    assert torch.equal(low, upcast)


def test_weights_scale_the_modality_terms():
    tokens, targets, masks = _batch()
    args = (TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))
    parts = ModalityPatchDiscriminationLoss().modality_losses(*args)
    weighted = ModalityPatchDiscriminationLoss(weight=0.5, modality_weights={"srtm": 0.0})(*args)
    assert weighted.item() == pytest.approx(0.5 * parts["sentinel2_l2a"].item(), abs=1e-7)


def test_mismatched_modalities_or_shapes_are_rejected():
    tokens, targets, masks = _batch()
    loss_fn = ModalityPatchDiscriminationLoss()
    with pytest.raises(ValueError, match="same modalities"):
        loss_fn(
            TokensAndMasks(tokens, masks),
            TokensAndMasks({"srtm": targets["srtm"]}, {"srtm": masks["srtm"]}),
        )
    targets["srtm"] = targets["srtm"][..., :4]
    with pytest.raises(ValueError, match="srtm: predicted tokens"):
        loss_fn(TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks))


# --- masked negatives -------------------------------------------------------------------


def test_same_target_negatives_are_dropped_for_maps():
    generator = torch.Generator().manual_seed(3)
    target = torch.randn(5, 8, generator=generator)
    target[1] = target[0] * 2.0  # same direction: cosine 1
    pred = torch.randn(5, 8, generator=generator)
    same = torch.zeros(5, 5, dtype=torch.bool)
    same[0, 1] = same[1, 0] = True
    expected = _explicit_sample_loss(pred, target, 0.1, excluded_NN=same)
    masked = MaskedNegativesPatchDiscriminationLoss()(*_single(pred, target, name="worldcover"))
    plain = ModalityPatchDiscriminationLoss()(*_single(pred, target, name="worldcover"))
    assert masked.item() == pytest.approx(expected.item(), abs=1e-6)
    assert masked.item() != pytest.approx(plain.item(), abs=1e-3)


def test_same_targets_stay_negatives_outside_the_masked_modalities():
    generator = torch.Generator().manual_seed(3)
    target = torch.randn(5, 8, generator=generator)
    target[1] = target[0]
    pred = torch.randn(5, 8, generator=generator)
    masked = MaskedNegativesPatchDiscriminationLoss()(*_single(pred, target, name="sentinel1"))
    plain = ModalityPatchDiscriminationLoss()(*_single(pred, target, name="sentinel1"))
    assert torch.equal(masked, plain)
    everywhere = MaskedNegativesPatchDiscriminationLoss(mask_negatives_for_modalities=None)
    assert everywhere(*_single(pred, target, name="sentinel1")) != plain


def test_a_sample_whose_targets_are_all_the_same_is_skipped():
    generator = torch.Generator().manual_seed(4)
    width = 8
    tokens = torch.randn(2, 3, 1, 1, 1, width, generator=generator)
    targets = torch.randn(2, 3, 1, 1, 1, width, generator=generator)
    targets[0] = targets[0, :1]  # sample 0: one class everywhere
    masks = torch.full((2, 3, 1, 1, 1), DEC, dtype=torch.int8)
    loss = MaskedNegativesPatchDiscriminationLoss().modality_losses(
        TokensAndMasks({"cdl": tokens}, {"cdl": masks}),
        TokensAndMasks({"cdl": targets}, {"cdl": masks}),
    )["cdl"]
    only_second = _explicit_sample_loss(
        tokens[1].reshape(3, width), targets[1].reshape(3, width), 0.1
    )
    assert loss.item() == pytest.approx(only_second.item(), abs=1e-6)


def test_a_single_decoded_token_is_kept_with_zero_loss():
    pred = torch.randn(1, 8)
    loss = MaskedNegativesPatchDiscriminationLoss()(*_single(pred, pred.clone(), name="cdl"))
    assert loss.item() == 0.0


def test_threshold_decides_what_counts_as_the_same_target():
    generator = torch.Generator().manual_seed(6)
    target = torch.randn(4, 8, generator=generator)
    target[1] = target[0] + 0.3 * torch.randn(8, generator=generator)  # cosine ~0.99
    pred = torch.randn(4, 8, generator=generator)
    cosine = F.cosine_similarity(target[0], target[1], dim=0).item()
    assert 0.9 < cosine < 0.999
    strict = MaskedNegativesPatchDiscriminationLoss(same_target_threshold=0.999)
    loose = MaskedNegativesPatchDiscriminationLoss(same_target_threshold=0.9)
    plain = ModalityPatchDiscriminationLoss()
    args = _single(pred, target, name="srtm")
    assert torch.equal(strict(*args), plain(*args))
    assert loose(*args) != plain(*args)


def test_function_returns_zero_for_an_empty_batch():
    empty = torch.zeros(0, 4, 8)
    assert patch_discrimination(empty, empty, torch.zeros(0, 4), 0.1).item() == 0.0


@pytest.mark.parametrize(
    ("config_class", "kwargs", "message"),
    [
        (ModalityPatchDiscriminationLossConfig, {"tau": 0}, "tau must be a number > 0; got 0"),
        (ModalityPatchDiscriminationLossConfig, {"weight": -1}, "weight must be a number >= 0"),
        (
            ModalityPatchDiscriminationLossConfig,
            {"modality_weights": {"dem": 1.0}},
            r"modality_weights has unknown modalities \['dem'\]; valid",
        ),
        (
            MaskedNegativesPatchDiscriminationLossConfig,
            {"same_target_threshold": 1.5},
            r"same_target_threshold must be a cosine similarity in \[-1, 1\]",
        ),
        (
            MaskedNegativesPatchDiscriminationLossConfig,
            {"mask_negatives_for_modalities": "cdl"},
            "not the string 'cdl'",
        ),
    ],
)
def test_config_errors_name_the_field_and_allowed_values(config_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        config_class(**kwargs)


def test_configs_build_losses_with_their_fields():
    loss = MaskedNegativesPatchDiscriminationLossConfig(tau=0.2, same_target_threshold=0.99).build()
    assert isinstance(loss, MaskedNegativesPatchDiscriminationLoss)
    assert (loss.tau, loss.same_target_threshold) == (0.2, 0.99)
    assert "worldcover" in loss.mask_negatives_for_modalities
    assert "sentinel2_l2a" not in loss.mask_negatives_for_modalities
    assert ModalityPatchDiscriminationLossConfig().build().tau == 0.1


# --- all modalities in one softmax (the reference's `patch_discrimination`) -------------


def test_flattened_loss_is_one_softmax_per_sample_over_every_modality():
    tokens, targets, masks = _batch(batch=2)
    loss = PatchDiscriminationLoss(weight=0.5)(
        TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks)
    )
    per_sample = []
    for b in range(2):
        preds, goals = [], []
        for name in ("sentinel2_l2a", "srtm"):  # canonical order; the loss does not care
            decoded = masks[name][b] == DEC
            preds.append(tokens[name][b][decoded])
            goals.append(targets[name][b][decoded])
        per_sample.append(_explicit_sample_loss(torch.cat(preds), torch.cat(goals), 0.1))
    expected = 0.5 * torch.stack(per_sample).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    per_modality = ModalityPatchDiscriminationLoss(weight=0.5)(
        TokensAndMasks(tokens, masks), TokensAndMasks(targets, masks)
    )
    assert loss.item() != pytest.approx(per_modality.item(), abs=1e-3)


def test_flattened_loss_with_pred2unit_ignores_per_feature_shift_and_scale():
    tokens, targets, masks = _batch()
    generator = torch.Generator().manual_seed(9)
    shift, scale = torch.randn(8, generator=generator), torch.rand(8, generator=generator) + 0.5
    moved = {name: t * scale + shift for name, t in tokens.items()}
    loss_fn = PatchDiscriminationLoss(pred2unit=True)
    target = TokensAndMasks(targets, masks)
    assert loss_fn(TokensAndMasks(moved, masks), target).item() == pytest.approx(
        loss_fn(TokensAndMasks(tokens, masks), target).item(), abs=1e-4
    )


def test_flattened_config_builds_the_loss():
    built = PatchDiscriminationLossConfig(tau=0.2, pred2unit=True, weight=0.5).build()
    assert (built.tau, built.pred2unit, built.weight) == (0.2, True, 0.5)
    with pytest.raises(ValueError, match="pred2unit must be True or False"):
        PatchDiscriminationLossConfig(pred2unit=1)
