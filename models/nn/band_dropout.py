"""Random band dropout (OlmoEarth v1.1): zero whole input bands of a sample before embedding.

Hypothesis of the recipe: with some bands missing, a token must be predicted from the bands
that remain, which forces cross-spectral features (the reference's v1.1 / v1.2 scripts apply it
to S2 and Landsat, whose 12 and 11 bands form one token each under v1.1's tokenization).

Semantics, as the reference's `MultiModalPatchEmbeddings` (olmoearth-pretrain 0.1.2):
- applied to one band set's data [B, ..., C] (bands last), before the patch projection;
- per call, the rate is drawn from U(0, max_rate) (`random_rate`, the recipe) or is max_rate;
- each band of each sample is dropped independently with that rate, for every pixel and
  timestep of the sample (whole channels), and a sample that would lose all its bands keeps
  one, chosen uniformly;
- a band set of one band is left alone (dropping it would always be undone);
- inactive until `enable()` and in eval mode: the reference's train module enables it on the
  online encoder only, so fine-tuning, evaluation and the frozen target never see it.

Randomness comes from torch's global generator, like DropPath (models/nn/attention.py), in the
reference's order (rate, then the [B, C] draw, then the rescue of all-dropped samples): the
same seed gives the same masks here and there for one band set. That order reads the rate and
the "all dropped" check on the host (two device syncs per band set and step, as the reference).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BandDropout(nn.Module):
    """Zeroes random whole bands per sample; see the module docstring.

    Args:
        max_rate: upper bound of the drop rate, in [0, 1) (0.2 in v1.1 / v1.2).
        random_rate: draw the rate from U(0, max_rate) per call (True in the recipe) instead of
            using max_rate itself.
    """

    def __init__(self, max_rate: float = 0.2, random_rate: bool = True):
        super().__init__()
        if not 0.0 <= max_rate < 1.0:
            raise ValueError(f"BandDropout max_rate must be in [0, 1), got {max_rate}")
        self.max_rate = max_rate
        self.random_rate = random_rate
        self.enabled = False

    def enable(self) -> None:
        """Turns the dropout on (it still acts only in train mode)."""
        self.enabled = True

    @property
    def active(self) -> bool:
        return self.enabled and self.training and self.max_rate > 0.0

    def draw_rate(self, device: torch.device) -> float:
        """This call's drop rate: U(0, max_rate), or max_rate without `random_rate`."""
        if not self.random_rate:
            return self.max_rate
        return torch.rand(1, device=device).item() * self.max_rate

    def draw_keep_mask(self, batch: int, bands: int, device: torch.device) -> Tensor:
        """[B, C] bool: True for kept bands; at least one True per sample."""
        rate = self.draw_rate(device)
        keep = torch.rand(batch, bands, device=device) >= rate
        none_kept = ~keep.any(dim=1)
        if none_kept.any():
            rescued = torch.randint(bands, (int(none_kept.sum()),), device=device)
            keep[none_kept, rescued] = True
        return keep

    def forward(self, x: Tensor) -> Tensor:
        """[B, ..., C] -> the same with the dropped bands of each sample zeroed."""
        bands = x.shape[-1]
        if not self.active or bands < 2:
            return x
        keep = self.draw_keep_mask(x.shape[0], bands, x.device)
        keep = keep.view(x.shape[0], *([1] * (x.dim() - 2)), bands)
        return x * keep.to(x.dtype)

    def extra_repr(self) -> str:
        return f"max_rate={self.max_rate}, random_rate={self.random_rate}, enabled={self.enabled}"
