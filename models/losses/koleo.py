"""KoLeo: a regularizer that spreads the online encoder's features over the unit sphere.

From the Kozachenko-Leonenko entropy estimator (used by DINOv2; the reference's `KoLeo`):
L2-normalize the vectors, find each one's nearest other vector, and penalize small gaps:

    x_i = v_i / max(|v_i|, eps),  j(i) = argmax_{j != i} x_i . x_j
    loss = - weight * mean_i log(|x_i - x_j(i) + eps| + eps)

The vectors are, by `mode`:
    instance: one per sample, the mean of its ONLINE_ENCODER tokens over every modality;
    patch:    every ONLINE_ENCODER token of the batch.
A `[B, D]` tensor (already pooled) is used as it is, in either mode.

Unlike the token losses, the input is the online encoder's output, not the decoder's. The
neighbour search is an `[M, M]` Gram matrix without gradient (only its argmax is used);
gradients flow through the distances. Ties in the argmax go to the lowest index. The
diagonal is set to -2, below any cosine, so a vector never picks itself (the reference sets
-1, which an exactly opposite neighbour ties; on such inputs the two can differ).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.config.configurable import Configurable
from models.losses.decoded_tokens import check_non_negative, check_positive, compute_dtype
from models.modalities.samples import MaskValue, TokensAndMasks

KOLEO_MODES = ("instance", "patch")


def koleo(vectors_MD: torch.Tensor, eps: float) -> torch.Tensor:
    """`- mean_i log(|x_i - x_nn(i) + eps| + eps)` over L2-normalized rows (module docstring)."""
    count = vectors_MD.shape[0]
    if vectors_MD.dim() != 2 or count < 2:
        raise ValueError(
            f"KoLeo needs at least 2 vectors [M, D] to find neighbours; got "
            f"{tuple(vectors_MD.shape)} (use a batch of 2 or more)"
        )
    x_MD = F.normalize(vectors_MD.to(compute_dtype(vectors_MD)), p=2, dim=-1, eps=eps)
    with torch.no_grad():
        # Unit vectors have dot products >= -1, so -2 on the diagonal never wins.
        dots_MM = (x_MD @ x_MD.T).fill_diagonal_(-2.0)
        neighbour_M = dots_MM.argmax(dim=1)
    distance_M = F.pairwise_distance(x_MD, x_MD[neighbour_M], p=2, eps=eps)
    return -torch.log(distance_M + eps).mean()


def online_encoder_vectors(
    encoded: TokensAndMasks, mode: Literal["instance", "patch"]
) -> torch.Tensor:
    """The vectors KoLeo spreads: per-sample means (instance) or tokens (patch) of the
    ONLINE_ENCODER tokens, `[M, D]`."""
    flat_tokens_BND, flat_mask_BN = encoded.flatten()
    visible_BN = flat_mask_BN == MaskValue.ONLINE_ENCODER
    tokens_BND = flat_tokens_BND.to(compute_dtype(flat_tokens_BND))
    if mode == "patch":
        return tokens_BND[visible_BN]
    count_B1 = visible_BN.sum(-1, keepdim=True)
    if bool((count_B1 == 0).any()):
        raise ValueError(
            "KoLeo (instance mode) needs an ONLINE_ENCODER token in every sample; some sample "
            "has none (check the masking strategy's encode ratio)"
        )
    summed_BD = torch.where(visible_BN.unsqueeze(-1), tokens_BND, 0.0).sum(1)
    return summed_BD / count_B1


@dataclasses.dataclass(kw_only=True)
class KoLeoLossConfig(Configurable["KoLeoLoss"]):
    """KoLeo regularizer on the online encoder's output (reference `KoLeo`).

    Attributes:
        weight: multiplies the loss (0.1, DINOv2's value, as the reference).
        mode: "instance" (one pooled vector per sample) or "patch" (every visible token).
        eps: normalization floor and distance offset (1e-8).
    """

    name = "koleo"

    weight: float = 0.1
    mode: str = "instance"
    eps: float = 1e-8

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_non_negative(owner, "weight", self.weight)
        check_positive(owner, "eps", self.eps)
        if self.mode not in KOLEO_MODES:
            raise ValueError(f"{owner}.mode must be one of {list(KOLEO_MODES)}; got {self.mode!r}")

    def build(self) -> KoLeoLoss:
        return KoLeoLoss(weight=self.weight, mode=self.mode, eps=self.eps)


class KoLeoLoss(nn.Module):
    """`weight * KoLeo` of the online encoder's pooled vectors or visible tokens."""

    def __init__(self, weight: float = 0.1, mode: str = "instance", eps: float = 1e-8) -> None:
        super().__init__()
        if mode not in KOLEO_MODES:
            raise ValueError(f"KoLeoLoss mode must be one of {list(KOLEO_MODES)}; got {mode!r}")
        self.weight = weight
        self.mode = mode
        self.eps = eps

    def forward(self, encoded: TokensAndMasks | torch.Tensor, target: None = None) -> torch.Tensor:
        """Args: the online encoder's `TokensAndMasks`, or pooled vectors `[B, D]`;
        `target` is unused (the reference's loss signature)."""
        if isinstance(encoded, TokensAndMasks):
            vectors_MD = online_encoder_vectors(encoded, self.mode)  # type: ignore[arg-type]
        else:
            vectors_MD = encoded
        return self.weight * koleo(vectors_MD, self.eps)
