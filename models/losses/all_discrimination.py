"""AllDisc (Galileo): patch discrimination whose negatives are every decoded token of the batch.

Patch discrimination contrasts a prediction with the other decoded targets of its own
sample; AllDisc pools the decoded tokens of all samples into one softmax:

    p_i = pred_i / |pred_i|,  t_j = target_j / |target_j|,  i, j over the batch's M tokens
    loss_i = 2 tau * CE(softmax_j(p_i . t_j / tau), j = i)
    loss   = (1 / B) * sum over samples b of mean_{i in b} loss_i

A sample without decoded tokens adds 0 but still counts in B (as the reference's
`all_discrimination`). `ModalityAllDiscriminationLoss` does the same per modality and sums
(`modality_all_discrimination`). The score matrix is `[M, M]`, M = decoded tokens in the
batch: memory grows with the square of the batch, which is why OlmoEarth moved to
per-sample patch discrimination.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from models.config.configurable import Configurable
from models.losses.decoded_tokens import (
    attached_zero,
    check_non_negative,
    check_positive,
    compute_dtype,
    decoder_mask,
    flatten_pair,
    modality_pairs,
    standardize_decoded,
)
from models.modalities.samples import TokensAndMasks


def all_discrimination(
    pred_BND: torch.Tensor,
    target_BND: torch.Tensor,
    mask_BN: torch.Tensor,
    tau: float,
    pred2unit: bool = False,
) -> torch.Tensor:
    """AllDisc over the DECODER tokens of `mask_BN` (module docstring); 0 when none."""
    decoder_BN = decoder_mask(mask_BN)
    dtype = compute_dtype(pred_BND)
    pred_BND = pred_BND.to(dtype)
    if pred2unit:
        pred_BND = standardize_decoded(pred_BND, decoder_BN)
    # Boolean selection keeps batch-major order; it costs one host sync (reading M).
    pred_MD = F.normalize(pred_BND[decoder_BN], p=2, dim=-1)
    if pred_MD.shape[0] == 0:
        return attached_zero(pred_BND)
    target_MD = F.normalize(target_BND.detach().to(dtype)[decoder_BN], p=2, dim=-1)
    scores_MM = pred_MD @ target_MD.T / tau
    labels_M = torch.arange(scores_MM.shape[0], device=scores_MM.device)
    token_loss_M = F.cross_entropy(scores_MM, labels_M, reduction="none") * (2 * tau)
    # Each token weighs 1 / (its sample's decoded count): a per-sample mean, summed.
    count_B = decoder_BN.sum(-1, keepdim=True)
    token_weight_M = (1.0 / count_B.clamp(min=1)).to(dtype).expand_as(decoder_BN)[decoder_BN]
    return (token_loss_M * token_weight_M).sum() / pred_BND.shape[0]


def _check(owner: str, tau: float, pred2unit: bool, weight: float) -> None:
    check_positive(owner, "tau", tau)
    check_non_negative(owner, "weight", weight)
    if not isinstance(pred2unit, bool):
        raise ValueError(f"{owner}.pred2unit must be True or False; got {pred2unit!r}")


@dataclasses.dataclass(kw_only=True)
class AllDiscriminationLossConfig(Configurable["AllDiscriminationLoss"]):
    """Galileo's AllDisc over all modalities (reference `all_discrimination`).

    Attributes:
        tau: softmax temperature.
        pred2unit: standardize each prediction feature over the batch's decoded tokens
            (mean 0, std 1 + 1e-4) before the L2 normalization.
        weight: multiplies the loss (the reference has no weight: 1).
    """

    name = "all_discrimination"

    tau: float = 0.1
    pred2unit: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        _check(type(self).__name__, self.tau, self.pred2unit, self.weight)

    def build(self) -> AllDiscriminationLoss:
        return AllDiscriminationLoss(tau=self.tau, pred2unit=self.pred2unit, weight=self.weight)


class AllDiscriminationLoss(nn.Module):
    """`weight *` AllDisc over every modality's decoded tokens at once."""

    def __init__(self, tau: float = 0.1, pred2unit: bool = False, weight: float = 1.0) -> None:
        super().__init__()
        self.tau = tau
        self.pred2unit = pred2unit
        self.weight = weight

    def forward(self, predicted: TokensAndMasks, target: TokensAndMasks) -> torch.Tensor:
        pred_BND, target_BND, mask_BN = flatten_pair(predicted, target)
        return self.weight * all_discrimination(
            pred_BND, target_BND, mask_BN, self.tau, self.pred2unit
        )


@dataclasses.dataclass(kw_only=True)
class ModalityAllDiscriminationLossConfig(AllDiscriminationLossConfig):
    """AllDisc per modality, summed (reference `modality_all_discrimination`); `pred2unit`
    statistics are then per modality."""

    name = "modality_all_discrimination"

    def build(self) -> ModalityAllDiscriminationLoss:
        return ModalityAllDiscriminationLoss(
            tau=self.tau, pred2unit=self.pred2unit, weight=self.weight
        )


class ModalityAllDiscriminationLoss(AllDiscriminationLoss):
    """`weight * sum over modalities of` AllDisc of that modality's decoded tokens."""

    def forward(self, predicted: TokensAndMasks, target: TokensAndMasks) -> torch.Tensor:
        losses = [
            all_discrimination(pred_BND, target_BND, mask_BN, self.tau, self.pred2unit)
            for _, pred_BND, target_BND, mask_BN in modality_pairs(predicted, target)
        ]
        if not losses:
            return torch.zeros((), dtype=torch.float32)
        return self.weight * torch.stack(losses).sum()
