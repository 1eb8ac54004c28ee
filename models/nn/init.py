"""Weight initialisation shared by the encoder and the predictor (the reference's scheme)."""

from __future__ import annotations

import torch
from torch import nn


def xavier_init_linears_(module: nn.Module) -> None:
    """xavier_uniform weights and zero biases for every nn.Linear under `module`.

    Skipped: modules flagged `keep_default_init = True` (patch projections keep PyTorch's default,
    as the reference). A Linear flagged `fused_chunks = k` (fused q/k/v, k = 3, or k/v, k = 2) is
    initialised chunk by chunk along its output rows, so each chunk gets the bound of a separate
    D x D layer, sqrt(6 / 2D), as the reference's separate q, k and v layers do; one xavier over
    the fused 3D x D matrix would use the smaller bound sqrt(6 / 4D).
    """
    for child in module.modules():
        if not isinstance(child, nn.Linear) or getattr(child, "keep_default_init", False):
            continue
        chunks = getattr(child, "fused_chunks", 1)
        with torch.no_grad():
            for weight in child.weight.chunk(chunks, dim=0):
                nn.init.xavier_uniform_(weight)
            if child.bias is not None:
                nn.init.zeros_(child.bias)
