"""Adjusted patch discrimination: negatives weighted by how hard they are.

Patch discrimination over each sample's decoded tokens of all modalities, with each
negative logit scaled by a Gaussian of its cosine similarity (the hard-negative weighting
of "Adjusting the contrastive loss...", NeurIPS 2023, as the reference's
`adjusted_patch_discrimination`):

    s_ij = p_i . t_j (unit vectors),  g_ij = N(s_ij; mu, sigma) for j != i
    w_ij = g_ij / mean_{k != i} g_ik                      (detached: a weight, not a path)
    logits_ii = s_ii / tau,  logits_ij = w_ij * s_ij / tau
    loss_sample = mean_i 2 tau * CE(softmax_j(logits_ij), j = i);  loss = mean over samples

With mu 0.7 and sigma 1 (the defaults) a negative with similarity 0.7 weighs most. A
sample with one decoded token has no negative and adds 0; a sample without decoded
tokens is left out of the mean (the reference fails on one). Vectorised like
`patch_discrimination`: samples padded to the longest decoded count.
"""

from __future__ import annotations

import dataclasses
import math

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
    standardize_decoded,
)
from models.losses.patch_discrimination import pack_decoded, sample_mean_of_token_losses
from models.modalities.samples import TokensAndMasks


def adjusted_patch_discrimination(
    pred_BND: torch.Tensor,
    target_BND: torch.Tensor,
    mask_BN: torch.Tensor,
    tau: float,
    mu: float,
    sigma: float,
) -> torch.Tensor:
    """The adjusted loss over the DECODER tokens of `mask_BN` (module docstring)."""
    packed = pack_decoded(pred_BND, target_BND, mask_BN)
    if packed is None:
        return attached_zero(pred_BND)
    pred_BnD, target_BnD, valid_Bn, count_B = packed
    n = valid_Bn.shape[1]
    similarity_Bnn = torch.bmm(
        F.normalize(pred_BnD, p=2, dim=-1), F.normalize(target_BnD, p=2, dim=-1).transpose(1, 2)
    )
    diagonal_nn = torch.eye(n, dtype=torch.bool, device=pred_BND.device)
    negative_Bnn = valid_Bn.unsqueeze(2) & valid_Bn.unsqueeze(1) & ~diagonal_nn
    with torch.no_grad():
        gaussian_Bnn = torch.exp(-((similarity_Bnn - mu) ** 2) / (2 * sigma**2)) / (
            sigma * math.sqrt(2 * math.pi)
        )
        gaussian_Bnn = torch.where(negative_Bnn, gaussian_Bnn, 0.0)
        mean_Bn1 = gaussian_Bnn.sum(-1, keepdim=True) / (count_B - 1).clamp(min=1)[:, None, None]
        # Rows without negatives (one decoded token, or padding) keep weight 1 everywhere.
        weight_Bnn = torch.where(
            negative_Bnn, gaussian_Bnn / torch.where(mean_Bn1 > 0, mean_Bn1, 1.0), 1.0
        )
    return sample_mean_of_token_losses(similarity_Bnn / tau * weight_Bnn, valid_Bn, count_B, tau)


@dataclasses.dataclass(kw_only=True)
class AdjustedPatchDiscriminationLossConfig(Configurable["AdjustedPatchDiscriminationLoss"]):
    """Hard-negative weighted patch discrimination (reference
    `adjusted_patch_discrimination`).

    Attributes:
        tau: softmax temperature.
        mu: cosine similarity at which a negative weighs most.
        sigma: width of the Gaussian weighting (larger: flatter weights).
        pred2unit: standardize each prediction feature over the batch's decoded tokens
            (mean 0, std 1 + 1e-4) before the L2 normalization.
        weight: multiplies the loss (the reference has no weight: 1).
    """

    name = "adjusted_patch_discrimination"

    tau: float = 0.1
    mu: float = 0.7
    sigma: float = 1.0
    pred2unit: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_positive(owner, "tau", self.tau)
        check_positive(owner, "sigma", self.sigma)
        check_non_negative(owner, "weight", self.weight)
        if isinstance(self.mu, bool) or not isinstance(self.mu, (int, float)):
            raise ValueError(f"{owner}.mu must be a number; got {self.mu!r}")
        if not isinstance(self.pred2unit, bool):
            raise ValueError(f"{owner}.pred2unit must be True or False; got {self.pred2unit!r}")

    def build(self) -> AdjustedPatchDiscriminationLoss:
        return AdjustedPatchDiscriminationLoss(
            tau=self.tau, mu=self.mu, sigma=self.sigma, pred2unit=self.pred2unit, weight=self.weight
        )


class AdjustedPatchDiscriminationLoss(nn.Module):
    """`weight *` adjusted patch discrimination over each sample's decoded tokens."""

    def __init__(
        self,
        tau: float = 0.1,
        mu: float = 0.7,
        sigma: float = 1.0,
        pred2unit: bool = False,
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.tau = tau
        self.mu = mu
        self.sigma = sigma
        self.pred2unit = pred2unit
        self.weight = weight

    def forward(self, predicted: TokensAndMasks, target: TokensAndMasks) -> torch.Tensor:
        pred_BND, target_BND, mask_BN = flatten_pair(predicted, target)
        if self.pred2unit:
            pred_BND = standardize_decoded(
                pred_BND.to(compute_dtype(pred_BND)), decoder_mask(mask_BN)
            )
        return self.weight * adjusted_patch_discrimination(
            pred_BND, target_BND, mask_BN, self.tau, self.mu, self.sigma
        )
