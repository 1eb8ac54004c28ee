"""Sample containers and mask semantics shared by data, masking, losses and the model.

Shape legend (the one legend of this repository; every module uses these letters):
    B  batch            H, W  pixels on the 10 m grid     T  timesteps (static maps: T = 1)
    C  bands            S     band sets (tokens per patch and timestep)
    P  patch size (px)  h, w  patches per side (H / P, W / P)
    N  tokens           D     width of a token

Layouts:
    Sample.data[m]            spatial [B, H, W, T, C];  non-spatial (latlon) [B, C]
    MaskedSample.masks[m]     spatial [B, H, W, T, S];  non-spatial [B, S]
    TokensAndMasks.tokens[m]  spatial [B, h, w, T, S, D]; non-spatial [B, S, D]
    TokensAndMasks.masks[m]   spatial [B, h, w, T, S];   non-spatial [B, S]

Masks are per band set, at pixel resolution, and constant inside a patch: the patch
embedding reads a patch's mask from its top-left pixel.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator

import torch

from models.modalities import modalities


class MaskValue(enum.IntEnum):
    """What happens to a token in one training view.

    ONLINE_ENCODER: the online encoder sees the token (it is the model's input).
    TARGET_ONLY:    hidden from the encoder and not predicted: only the target encoder
                    sees it, and the losses ignore it.
    DECODER:        hidden from the encoder; the decoder must predict its target latent.
    MISSING:        there is no data here (a missing timestep, modality or band set);
                    nobody sees it and no loss is computed on it.
    """

    ONLINE_ENCODER = 0
    TARGET_ONLY = 1
    DECODER = 2
    MISSING = 3


MASK_DTYPE = torch.int8


def _map_tensors(
    values: dict[str, torch.Tensor], fn: Callable[[torch.Tensor], torch.Tensor]
) -> dict[str, torch.Tensor]:
    return {name: fn(value) for name, value in values.items()}


@dataclasses.dataclass
class Sample:
    """A batch of inputs: per-modality arrays plus timestamps.

    `timestamps[b, t] = (day of month, month 0..11, year)`. Values equal to
    `modalities.MISSING_VALUE` mark missing data.
    """

    data: dict[str, torch.Tensor]
    timestamps: torch.Tensor

    def __post_init__(self) -> None:
        for name, value in self.data.items():
            spec = modalities.get(name)
            expected = 5 if spec.is_spatial else 2
            if value.dim() != expected:
                raise ValueError(
                    f"Sample.data[{name!r}] has shape {tuple(value.shape)}; expected "
                    f"{'[B, H, W, T, C]' if spec.is_spatial else '[B, C]'}"
                )
            if value.shape[-1] != spec.num_bands:
                raise ValueError(
                    f"Sample.data[{name!r}] has {value.shape[-1]} bands; {name} has "
                    f"{spec.num_bands}: {list(spec.storage_bands)}"
                )
        if self.timestamps.dim() != 3 or self.timestamps.shape[-1] != 3:
            raise ValueError(
                f"Sample.timestamps has shape {tuple(self.timestamps.shape)}; expected [B, T, 3]"
            )

    @property
    def modality_names(self) -> tuple[str, ...]:
        return modalities.canonical_order(self.data)

    @property
    def batch_size(self) -> int:
        return self.timestamps.shape[0]

    @property
    def num_timesteps(self) -> int:
        return self.timestamps.shape[1]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Sample:
        return Sample(
            data=_map_tensors(self.data, lambda x: x.to(device, non_blocking=non_blocking)),
            timestamps=self.timestamps.to(device, non_blocking=non_blocking),
        )


def missing_band_set_mask(values: torch.Tensor, spec: modalities.ModalitySpec) -> torch.Tensor:
    """Per band set, True where every band of the set equals MISSING_VALUE.

    values: spatial `[..., C]` (any leading axes); returns `[..., S]` bool.
    """
    is_missing = values == modalities.MISSING_VALUE
    per_set = []
    for indices in spec.band_set_indices():
        # An elementwise AND of the set's band columns: reducing a strided slice with
        # .all(-1) was 2x slower (and this was half of the masking time, tools/bench/data.py).
        missing = is_missing[..., indices[0]].clone()
        for index in indices[1:]:
            missing &= is_missing[..., index]
        per_set.append(missing)
    return torch.stack(per_set, dim=-1)


@dataclasses.dataclass
class MaskedSample:
    """A batch with a per-band-set mask for every modality (values are `MaskValue`)."""

    data: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    timestamps: torch.Tensor

    def __post_init__(self) -> None:
        if set(self.data) != set(self.masks):
            raise ValueError(
                f"MaskedSample needs one mask per modality: data has {sorted(self.data)}, "
                f"masks has {sorted(self.masks)}"
            )
        for name, value in self.data.items():
            mask = self.masks[name]
            if mask.shape[:-1] != value.shape[:-1]:
                raise ValueError(
                    f"MaskedSample.masks[{name!r}] has shape {tuple(mask.shape)}; it must match "
                    f"the data {tuple(value.shape)} on every axis but the last"
                )

    @classmethod
    def from_sample(
        cls,
        sample: Sample,
        tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION,
    ) -> MaskedSample:
        """Everything visible to the encoder, except band sets with no data (MISSING)."""
        masks = {}
        for name, value in sample.data.items():
            missing = missing_band_set_mask(value, tokenization.spec(name))
            mask = torch.full(missing.shape, MaskValue.ONLINE_ENCODER, dtype=MASK_DTYPE)
            masks[name] = mask.masked_fill_(missing, MaskValue.MISSING)
        return cls(data=dict(sample.data), masks=masks, timestamps=sample.timestamps)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return modalities.canonical_order(self.data)

    @property
    def batch_size(self) -> int:
        return self.timestamps.shape[0]

    @property
    def num_timesteps(self) -> int:
        return self.timestamps.shape[1]

    def unmask(self) -> MaskedSample:
        """The view the target encoder sees: every token with data becomes visible."""
        masks = {
            name: torch.where(
                mask == MaskValue.MISSING,
                mask,
                torch.full_like(mask, MaskValue.ONLINE_ENCODER),
            )
            for name, mask in self.masks.items()
        }
        return MaskedSample(data=self.data, masks=masks, timestamps=self.timestamps)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MaskedSample:
        return MaskedSample(
            data=_map_tensors(self.data, lambda x: x.to(device, non_blocking=non_blocking)),
            masks=_map_tensors(self.masks, lambda x: x.to(device, non_blocking=non_blocking)),
            timestamps=self.timestamps.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> MaskedSample:
        """Called by DataLoader(pin_memory=True) on a custom batch type."""
        return MaskedSample(
            data=_map_tensors(self.data, torch.Tensor.pin_memory),
            masks=_map_tensors(self.masks, torch.Tensor.pin_memory),
            timestamps=self.timestamps.pin_memory(),
        )


@dataclasses.dataclass
class TokensAndMasks:
    """Per-modality tokens and their masks, as produced by the encoder and the predictor."""

    tokens: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]

    @property
    def modality_names(self) -> tuple[str, ...]:
        return modalities.canonical_order(self.tokens)

    def items(self) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        """(name, tokens, mask) in canonical modality order."""
        for name in self.modality_names:
            yield name, self.tokens[name], self.masks[name]

    def flatten(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All tokens as `[B, N, D]` and masks as `[B, N]`, modalities in canonical order."""
        flat_tokens, flat_masks = [], []
        for _, tokens, mask in self.items():
            flat_tokens.append(tokens.reshape(tokens.shape[0], -1, tokens.shape[-1]))
            flat_masks.append(mask.reshape(mask.shape[0], -1))
        return torch.cat(flat_tokens, dim=1), torch.cat(flat_masks, dim=1)
