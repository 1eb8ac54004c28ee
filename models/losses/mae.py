"""MAE: pixel reconstruction loss on the masked band sets (the reference's `mae`).

A pixel decoder reconstructs every modality as data, `[B, H, W, T, C]` (non-spatial
`[B, C]`); the target is the view's `MaskedSample`, whose masks are per band set
`[B, H, W, T, S]`. Each channel takes the mask of its band set (the tokenization fixes
which channels form a set), and the loss is

    loss = weight * sum over counted elements of elementwise_loss(pred, data) / their count

where counted = DECODER elements (`only_decode`, the default) or every element with data
(not MISSING). Only the modalities the decoder reconstructs take part. `loss_function`
names the elementwise loss as the reference's torch.nn class name: MSELoss, L1Loss,
SmoothL1Loss or HuberLoss, with `loss_kwargs` for its parameters (beta, delta).

terra-lab's LatentMIM has no pixel decoder; this loss is for a model that adds one, and is
tested on the shapes such a decoder produces. With nothing counted the loss is 0 (the
reference divides by a zero count: NaN). Elements that are not counted are zeroed on both
sides before the loss, so neither the MISSING fill (-99999) nor a NaN there reaches the value
or the gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.config.configurable import Configurable
from models.losses.decoded_tokens import check_non_negative, compute_dtype
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue

ELEMENTWISE_LOSSES: dict[str, Any] = {
    "MSELoss": F.mse_loss,
    "L1Loss": F.l1_loss,
    "SmoothL1Loss": F.smooth_l1_loss,
    "HuberLoss": F.huber_loss,
}
"""torch.nn loss class name -> its functional form (each is 0 where pred == target)."""

_LOSS_PARAMETERS: dict[str, tuple[str, ...]] = {
    "MSELoss": (),
    "L1Loss": (),
    "SmoothL1Loss": ("beta",),
    "HuberLoss": ("delta",),
}


def channel_band_sets(spec: modalities.ModalitySpec) -> torch.Tensor:
    """For each channel of `spec`'s data, the index of its band set, `[C]`."""
    band_set_C = torch.empty(spec.num_bands, dtype=torch.long)
    for band_set, channels in enumerate(spec.band_set_indices()):
        band_set_C[list(channels)] = band_set
    return band_set_C


@dataclasses.dataclass(kw_only=True)
class MAELossConfig(Configurable["MAELoss"]):
    """Pixel reconstruction loss (reference `mae`).

    Attributes:
        loss_function: elementwise loss, by torch.nn class name (MSELoss as the reference).
        loss_kwargs: its parameters (SmoothL1Loss: beta; HuberLoss: delta).
        only_decode: count DECODER elements only (True), or every element with data.
        weight: multiplies the loss.
        tokenization: the band grouping of the masks (must be the model's and the data's).
    """

    name = "mae"

    loss_function: str = "MSELoss"
    loss_kwargs: dict[str, float] | None = None
    only_decode: bool = True
    weight: float = 1.0
    tokenization: modalities.Tokenization = dataclasses.field(
        default_factory=lambda: modalities.DEFAULT_TOKENIZATION
    )

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_non_negative(owner, "weight", self.weight)
        if self.loss_function not in ELEMENTWISE_LOSSES:
            raise ValueError(
                f"{owner}.loss_function {self.loss_function!r} is not supported; use one of "
                f"{list(ELEMENTWISE_LOSSES)}"
            )
        allowed = _LOSS_PARAMETERS[self.loss_function]
        unknown = sorted(set(self.loss_kwargs or {}) - set(allowed))
        if unknown:
            raise ValueError(
                f"{owner}.loss_kwargs has {unknown}, which {self.loss_function} does not take; "
                f"it takes {list(allowed)}"
            )
        if not isinstance(self.only_decode, bool):
            raise ValueError(f"{owner}.only_decode must be True or False; got {self.only_decode!r}")

    def build(self) -> MAELoss:
        return MAELoss(
            loss_function=self.loss_function,
            loss_kwargs=self.loss_kwargs,
            only_decode=self.only_decode,
            weight=self.weight,
            tokenization=self.tokenization,
        )


class MAELoss(nn.Module):
    """`weight *` mean elementwise loss over the counted (masked) elements (module docstring)."""

    def __init__(
        self,
        loss_function: str = "MSELoss",
        loss_kwargs: dict[str, float] | None = None,
        only_decode: bool = True,
        weight: float = 1.0,
        tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION,
    ) -> None:
        super().__init__()
        if loss_function not in ELEMENTWISE_LOSSES:
            raise ValueError(
                f"MAELoss loss_function {loss_function!r} is not supported; use one of "
                f"{list(ELEMENTWISE_LOSSES)}"
            )
        self.elementwise = ELEMENTWISE_LOSSES[loss_function]
        self.loss_kwargs = dict(loss_kwargs or {})
        self.only_decode = only_decode
        self.weight = weight
        self.tokenization = tokenization

    def _counted(self, mask: torch.Tensor) -> torch.Tensor:
        if self.only_decode:
            return mask == MaskValue.DECODER
        return mask != MaskValue.MISSING

    def forward(self, reconstructed: dict[str, torch.Tensor], target: MaskedSample) -> torch.Tensor:
        """Args:
        reconstructed: the decoder's data per modality, shaped like `target.data`.
        target: the masked view; its masks say which elements count.
        """
        if not reconstructed:
            raise ValueError("MAELoss needs at least one reconstructed modality; got none")
        missing = sorted(set(reconstructed) - set(target.data))
        if missing:
            raise ValueError(
                f"MAELoss: reconstructed modalities {missing} are not in the target "
                f"(it has {sorted(target.data)})"
            )
        total, count = None, None
        for name in modalities.canonical_order(reconstructed):
            pred = reconstructed[name]
            data, mask = target.data[name], target.masks[name]
            if pred.shape != data.shape:
                raise ValueError(
                    f"MAELoss: reconstructed {name} {tuple(pred.shape)} differs from the target "
                    f"data {tuple(data.shape)}"
                )
            band_set_C = channel_band_sets(self.tokenization.spec(name)).to(mask.device)
            counted = self._counted(mask)[..., band_set_C]  # [..., S] -> [..., C]
            # Zero what is not counted on both sides first: the MISSING fill, or a NaN the
            # decoder put there, would otherwise reach the gradient as 0 * NaN.
            pred = torch.where(counted, pred.to(compute_dtype(pred)), 0.0)
            data = torch.where(counted, data.to(pred.dtype), 0.0)
            elementwise = self.elementwise(pred, data, reduction="none", **self.loss_kwargs)
            part = torch.where(counted, elementwise, 0.0).sum()
            part_count = counted.sum()
            total = part if total is None else total + part
            count = part_count if count is None else count + part_count
        # A zero count has a zero total: 0, with no host sync to test for it.
        return self.weight * total / count.clamp(min=1)
