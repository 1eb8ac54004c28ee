"""L1, L2, cosine similarity and cross entropy on decoded tokens: values, selection, errors."""

import math

import pytest
import torch

from models.losses.token_losses import (
    CosineSimilarityLoss,
    CosineSimilarityLossConfig,
    CrossEntropyLoss,
    CrossEntropyLossConfig,
    L1Loss,
    L1LossConfig,
    L2Loss,
    L2LossConfig,
)
from models.modalities.samples import MaskValue, TokensAndMasks

DEC = int(MaskValue.DECODER)
OTHER = int(MaskValue.ONLINE_ENCODER)


def _pair(pred_BND, target_BND, mask_BN):
    """S1 holds the first token of each sample, SRTM the rest: the flattening is exercised."""
    batch, n = mask_BN.shape

    def side(x):
        return {
            "sentinel1": x[:, :1].reshape(batch, 1, 1, 1, 1, x.shape[-1]),
            "srtm": x[:, 1:].reshape(batch, n - 1, 1, 1, 1, x.shape[-1]),
        }

    masks = {
        "sentinel1": mask_BN[:, :1].reshape(batch, 1, 1, 1, 1),
        "srtm": mask_BN[:, 1:].reshape(batch, n - 1, 1, 1, 1),
    }
    return TokensAndMasks(side(pred_BND), masks), TokensAndMasks(side(target_BND), masks)


# Two samples of three 2-d tokens; sample 0 decodes tokens 0 and 2, sample 1 token 1.
PRED = torch.tensor([[[1.0, 2.0], [9.0, 9.0], [0.0, -1.0]], [[5.0, 5.0], [3.0, 0.0], [7.0, 7.0]]])
TARGET = torch.tensor([[[0.0, 2.0], [0.0, 0.0], [2.0, 1.0]], [[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])
MASK = torch.tensor([[DEC, OTHER, DEC], [OTHER, DEC, OTHER]], dtype=torch.int8)


def test_l1_is_the_mean_absolute_error_of_decoded_features():
    # |1-0| + |2-2| + |0-2| + |-1-1| + |3-1| + |0-0| = 7 over 3 tokens x 2 features.
    assert L1Loss()(*_pair(PRED, TARGET, MASK)).item() == pytest.approx(7 / 6)


def test_l2_is_the_mean_squared_error_of_decoded_features():
    # 1 + 0 + 4 + 4 + 4 + 0 = 13 over 6 features.
    assert L2Loss(weight=2.0)(*_pair(PRED, TARGET, MASK)).item() == pytest.approx(2 * 13 / 6)


def test_cosine_similarity_loss_is_minus_the_mean_cosine():
    # cos((1,2),(0,2)) = 2/sqrt(5); cos((0,-1),(2,1)) = -1/sqrt(5); cos((3,0),(1,0)) = 1.
    expected = -(2 / math.sqrt(5) - 1 / math.sqrt(5) + 1) / 3
    loss = CosineSimilarityLoss()(*_pair(PRED, TARGET, MASK))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_cosine_similarity_ignores_the_scale_of_each_token():
    scale = torch.tensor([[[0.5], [3.0], [10.0]], [[2.0], [0.1], [4.0]]])
    loss_fn = CosineSimilarityLoss()
    assert loss_fn(*_pair(PRED * scale, TARGET, MASK)).item() == pytest.approx(
        loss_fn(*_pair(PRED, TARGET, MASK)).item(), abs=1e-6
    )
    assert loss_fn(*_pair(TARGET + 1, TARGET + 1, MASK)).item() == pytest.approx(-1.0)


def test_tokens_are_pooled_across_samples_not_averaged_per_sample():
    # Sample 0 decodes 2 tokens and sample 1 one: a per-sample mean would weigh them 1:1.
    per_token = (PRED - TARGET).abs().mean(-1)
    pooled = (per_token[0, 0] + per_token[0, 2] + per_token[1, 1]) / 3
    per_sample = ((per_token[0, 0] + per_token[0, 2]) / 2 + per_token[1, 1]) / 2
    loss = L1Loss()(*_pair(PRED, TARGET, MASK)).item()
    assert loss == pytest.approx(pooled.item())
    assert loss != pytest.approx(per_sample.item())


@pytest.mark.parametrize("loss_fn", [L1Loss(), L2Loss(), CosineSimilarityLoss()])
def test_non_decoded_tokens_do_not_matter_even_when_not_finite(loss_fn):
    before = loss_fn(*_pair(PRED, TARGET, MASK))
    pred, target = PRED.clone(), TARGET.clone()
    pred[MASK != DEC] = float("nan")
    target[MASK != DEC] = float("inf")
    pred.requires_grad_()
    after = loss_fn(*_pair(pred, target, MASK))
    assert after.item() == pytest.approx(before.item(), abs=1e-7)
    after.backward()
    assert (pred.grad[MASK != DEC] == 0).all()
    assert (pred.grad[MASK == DEC].abs().sum(-1) > 0).all()


@pytest.mark.parametrize(
    "loss_fn", [L1Loss(), L2Loss(), CosineSimilarityLoss(), CrossEntropyLoss()]
)
def test_no_decoded_token_gives_a_zero_that_backpropagates(loss_fn):
    pred = PRED.clone().requires_grad_()
    target = torch.softmax(TARGET, -1)
    loss = loss_fn(*_pair(pred, target, torch.full_like(MASK, OTHER)))
    assert loss.item() == 0.0
    loss.backward()
    assert (pred.grad == 0).all()


def test_targets_get_no_gradient():
    pred, target = PRED.clone().requires_grad_(), TARGET.clone().requires_grad_()
    L2Loss()(*_pair(pred, target, MASK)).backward()
    assert target.grad is None and pred.grad is not None


def test_cross_entropy_of_uniform_logits_is_log_of_the_class_count():
    logits = torch.zeros(2, 3, 5)
    labels = torch.randint(0, 5, (2, 3, 1), generator=torch.Generator().manual_seed(0))
    loss = CrossEntropyLoss()(*_pair(logits, labels, MASK))
    assert loss.item() == pytest.approx(math.log(5), abs=1e-6)


def test_cross_entropy_class_indices_equal_one_hot_probabilities():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, generator=generator)
    labels = torch.randint(0, 4, (2, 3, 1), generator=generator)
    one_hot = torch.nn.functional.one_hot(labels[..., 0], 4).float()
    by_index = CrossEntropyLoss()(*_pair(logits, labels, MASK))
    by_probability = CrossEntropyLoss()(*_pair(logits, one_hot, MASK))
    assert by_index.item() == pytest.approx(by_probability.item(), abs=1e-6)
    # Decoded tokens 0,2 of sample 0 and token 1 of sample 1, by hand.
    log_p = torch.log_softmax(logits, -1)
    picked = [
        log_p[0, 0, labels[0, 0, 0]],
        log_p[0, 2, labels[0, 2, 0]],
        log_p[1, 1, labels[1, 1, 0]],
    ]
    assert by_index.item() == pytest.approx(-sum(picked).item() / 3, abs=1e-6)


def test_cross_entropy_rejects_targets_it_cannot_read():
    logits = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="class-probability targets .* must have the predictions'"):
        CrossEntropyLoss()(*_pair(logits, torch.rand(2, 3, 3), MASK))
    with pytest.raises(ValueError, match="class-index targets must have width 1"):
        CrossEntropyLoss()(*_pair(logits, torch.zeros(2, 3, 2, dtype=torch.long), MASK))


def test_widths_that_differ_are_rejected_for_regression_losses():
    with pytest.raises(ValueError, match="sentinel1: predicted tokens .* differ in shape"):
        L1Loss()(*_pair(PRED, torch.zeros(2, 3, 3), MASK))


def test_configs_build_their_losses_with_the_weight():
    for config, loss_class in (
        (L1LossConfig, L1Loss),
        (L2LossConfig, L2Loss),
        (CosineSimilarityLossConfig, CosineSimilarityLoss),
        (CrossEntropyLossConfig, CrossEntropyLoss),
    ):
        built = config(weight=0.25).build()
        assert type(built) is loss_class and built.weight == 0.25
    with pytest.raises(ValueError, match="L2LossConfig.weight must be a number >= 0"):
        L2LossConfig(weight=-1.0)
