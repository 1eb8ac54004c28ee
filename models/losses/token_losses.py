"""Per-token losses on the decoded tokens: L1, L2, negative cosine similarity, cross entropy.

Each compares a prediction with its own target only (no negatives), over the DECODER
tokens of every modality pooled together (the reference's `l1`, `l2`, `cosine_similarity`
and `cross_entropy`):

    l1:                mean over decoded tokens and features of |pred - target|
    l2:                mean over decoded tokens and features of (pred - target)^2
    cosine_similarity: - mean over decoded tokens of cos(pred, target)
    cross_entropy:     mean over decoded tokens of CE(pred as logits, target), the target
                       being class probabilities (same width as pred) or a class index
                       (an integer tensor of width 1)

Tokens are pooled across samples, so a sample with more decoded tokens weighs more (unlike
patch discrimination's per-sample mean). With no decoded token the loss is 0 (the
reference's mean over nothing is NaN).
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
    compute_dtype,
    decoder_mask,
    flatten_pair,
)
from models.modalities.samples import TokensAndMasks


class DecodedTokenLoss(nn.Module):
    """`weight * mean over decoded tokens of per_token(pred, target)` (subclasses say what
    `per_token` is)."""

    # Class-index targets (cross entropy) have width 1, not the predictions' width.
    targets_share_width = True

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = weight

    def per_token(self, pred_MD: torch.Tensor, target_MD: torch.Tensor) -> torch.Tensor:
        """The loss of each decoded token, `[M]`, in the compute dtype."""
        raise NotImplementedError(f"{type(self).__name__} must define per_token")

    def forward(self, predicted: TokensAndMasks, target: TokensAndMasks) -> torch.Tensor:
        pred_BND, target_BND, mask_BN = flatten_pair(
            predicted, target, same_width=self.targets_share_width
        )
        decoder_BN = decoder_mask(mask_BN)
        # Selecting (one host sync) computes the loss on decoded tokens only: a masked sum
        # over every token took about 3x as long on CPU (16 samples x 384 tokens, a quarter
        # decoded), and a NaN in another token never enters the value or the gradient.
        pred_MD = pred_BND[decoder_BN].to(compute_dtype(pred_BND))
        if pred_MD.shape[0] == 0:
            return attached_zero(pred_BND)
        token_loss_M = self.per_token(pred_MD, target_BND.detach()[decoder_BN])
        return self.weight * token_loss_M.mean()


class L1Loss(DecodedTokenLoss):
    """Mean absolute error per feature of the decoded tokens."""

    def per_token(self, pred_MD: torch.Tensor, target_MD: torch.Tensor) -> torch.Tensor:
        return (pred_MD - target_MD.to(pred_MD.dtype)).abs().mean(-1)


class L2Loss(DecodedTokenLoss):
    """Mean squared error per feature of the decoded tokens."""

    def per_token(self, pred_MD: torch.Tensor, target_MD: torch.Tensor) -> torch.Tensor:
        return (pred_MD - target_MD.to(pred_MD.dtype)).square().mean(-1)


class CosineSimilarityLoss(DecodedTokenLoss):
    """Negative cosine similarity of each decoded prediction with its target (-1 at best)."""

    def per_token(self, pred_MD: torch.Tensor, target_MD: torch.Tensor) -> torch.Tensor:
        return -F.cosine_similarity(pred_MD, target_MD.to(pred_MD.dtype), dim=-1)


class CrossEntropyLoss(DecodedTokenLoss):
    """Cross entropy of the decoded predictions (logits over D classes) with their targets."""

    targets_share_width = False

    def per_token(self, pred_MD: torch.Tensor, target_MD: torch.Tensor) -> torch.Tensor:
        if target_MD.is_floating_point():
            if target_MD.shape != pred_MD.shape:
                raise ValueError(
                    f"cross_entropy: class-probability targets of width {target_MD.shape[-1]} "
                    f"must have the predictions' width {pred_MD.shape[-1]}; for class indices "
                    f"pass an integer tensor of width 1"
                )
            return F.cross_entropy(pred_MD, target_MD.to(pred_MD.dtype), reduction="none")
        if target_MD.shape[-1] != 1:
            raise ValueError(
                f"cross_entropy: class-index targets must have width 1; got width "
                f"{target_MD.shape[-1]} (float targets are read as probabilities)"
            )
        return F.cross_entropy(pred_MD, target_MD[:, 0].long(), reduction="none")


@dataclasses.dataclass(kw_only=True)
class DecodedTokenLossFields(Configurable[DecodedTokenLoss]):
    """The shared field of the per-token losses' configs (not a config itself: it builds
    nothing, so it is not named *Config)."""

    weight: float = 1.0

    def __post_init__(self) -> None:
        check_non_negative(type(self).__name__, "weight", self.weight)


@dataclasses.dataclass(kw_only=True)
class L1LossConfig(DecodedTokenLossFields):
    """L1 on the decoded tokens (reference `l1`). `weight` multiplies it (reference: 1)."""

    name = "l1"

    def build(self) -> L1Loss:
        return L1Loss(weight=self.weight)


@dataclasses.dataclass(kw_only=True)
class L2LossConfig(DecodedTokenLossFields):
    """Mean squared error on the decoded tokens (reference `l2`). `weight` multiplies it
    (reference: 1)."""

    name = "l2"

    def build(self) -> L2Loss:
        return L2Loss(weight=self.weight)


@dataclasses.dataclass(kw_only=True)
class CosineSimilarityLossConfig(DecodedTokenLossFields):
    """Negative cosine similarity on the decoded tokens (reference `cosine_similarity`).
    `weight` multiplies it (reference: 1)."""

    name = "cosine_similarity"

    def build(self) -> CosineSimilarityLoss:
        return CosineSimilarityLoss(weight=self.weight)


@dataclasses.dataclass(kw_only=True)
class CrossEntropyLossConfig(DecodedTokenLossFields):
    """Cross entropy on the decoded tokens (reference `cross_entropy`). `weight` multiplies
    it (reference: 1)."""

    name = "cross_entropy"

    def build(self) -> CrossEntropyLoss:
        return CrossEntropyLoss(weight=self.weight)
