"""InfoNCE between the pooled vectors of two views of the same batch.

    loss = weight * CE(norm(a) @ norm(b)^T / tau, labels = arange(B))

Sample i of view a must pick sample i of view b among the batch's B samples: the other
samples are the negatives. The OlmoEarth recipes use tau 0.1 with weight 0.1 (v1) or
0.05 (v1.1 / v1.2). Computed in fp32 at least; gradients reach both views.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from models.config.configurable import Configurable
from models.losses.decoded_tokens import check_non_negative, check_positive


@dataclasses.dataclass(kw_only=True)
class InfoNCELossConfig(Configurable["InfoNCELoss"]):
    """Instance contrast between two views (reference `InfoNCE`).

    Attributes:
        tau: softmax temperature.
        weight: multiplies the loss (0.1 in v1, 0.05 in v1.1 / v1.2).
    """

    name = "info_nce"

    tau: float = 0.1
    weight: float = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_positive(owner, "tau", self.tau)
        check_non_negative(owner, "weight", self.weight)

    def build(self) -> InfoNCELoss:
        return InfoNCELoss(tau=self.tau, weight=self.weight)


class InfoNCELoss(nn.Module):
    """`weight * CE(norm(a) @ norm(b)^T / tau, arange(B))`."""

    def __init__(self, tau: float = 0.1, weight: float = 1.0) -> None:
        super().__init__()
        self.tau = tau
        self.weight = weight

    def forward(self, pooled_a_BD: torch.Tensor, pooled_b_BD: torch.Tensor) -> torch.Tensor:
        """Args: the pooled vectors of view a and view b, `[B, D]`, sample i of a paired
        with sample i of b."""
        if pooled_a_BD.dim() != 2 or pooled_a_BD.shape != pooled_b_BD.shape:
            raise ValueError(
                f"InfoNCE needs two [B, D] tensors of one shape; got "
                f"{tuple(pooled_a_BD.shape)} and {tuple(pooled_b_BD.shape)}"
            )
        dtype = torch.promote_types(pooled_a_BD.dtype, torch.float32)
        a_BD = F.normalize(pooled_a_BD.to(dtype), p=2, dim=-1)
        b_BD = F.normalize(pooled_b_BD.to(dtype), p=2, dim=-1)
        logits_BB = a_BD @ b_BD.transpose(0, 1)
        labels_B = torch.arange(a_BD.shape[0], device=a_BD.device)
        return self.weight * F.cross_entropy(logits_BB / self.tau, labels_B)
