"""Unstructured and structured single-view masking: `random`, `space` and `time`.

All three split tokens between the online encoder (`encode_ratio`), the decoder
(`decode_ratio`) and TARGET_ONLY (the rest); they differ in what shares a decision:
- random: nothing; each token of a modality is drawn independently of the others
  (exact counts per sample and modality).
- space: a patch position; one h x w pattern per sample covers every timestep, band set
  and spatial modality.
- time: a timestep; one pattern over the sample's present timesteps covers every patch,
  band set and multitemporal modality.
Modalities a structure cannot cover (static maps under `time`, lat/lon under `space`)
fall back to random masking, as in the reference.
"""

from __future__ import annotations

import dataclasses

import einops
import torch

from models.masking import base
from models.masking.base import MISSING


@dataclasses.dataclass(kw_only=True)
class RandomMaskingConfig(base.MaskingConfig):
    """Random token masking (reference `random`)."""

    name = "random"

    def build(self) -> RandomMasking:
        return RandomMasking(self)


class RandomMasking(base.MaskingStrategy):
    """Per sample and modality, exactly `int(n * encode_ratio)` of its n present tokens
    (all timesteps and band sets together) are encoded and `int(n * decode_ratio)`
    decoded. A modality without spatial axes (lat/lon: one token per sample) is drawn
    over the whole batch instead, as the reference does, since one token per sample
    cannot be split.
    """

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        return {name: self.random_token_mask(name, p, generator) for name, p in present.items()}

    def random_token_mask(
        self, name: str, present: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        config = self.config
        if self.spec(name).is_spatial:
            return base.random_fill(present, config.encode_ratio, config.decode_ratio, generator)
        pooled = present.reshape(1, -1)
        mask = base.random_fill(pooled, config.encode_ratio, config.decode_ratio, generator)
        return mask.reshape(present.shape)


@dataclasses.dataclass(kw_only=True)
class SpaceMaskingConfig(base.MaskingConfig):
    """Whole patch positions masked together (reference `space`)."""

    name = "space"

    def build(self) -> SpaceMasking:
        return SpaceMasking(self)


class SpaceMasking(RandomMasking):
    """Per sample, `int(h * w * encode_ratio)` patch positions are encoded and
    `int(h * w * decode_ratio)` decoded, for every timestep, band set and spatial
    modality at once. The counts run over all h * w positions, as in the reference."""

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        spatial = [name for name in present if self.spec(name).is_spatial]
        grids = {tuple(present[name].shape[:3]) for name in spatial}
        if len(grids) > 1:
            raise ValueError(
                f"space masking needs one patch grid for all spatial modalities; got "
                f"{ {name: tuple(present[name].shape[1:3]) for name in spatial} }"
            )
        pattern = None
        if spatial:
            batch, height, width = grids.pop()
            positions = torch.ones(batch, height * width, dtype=torch.bool)
            positions = positions.to(present[spatial[0]].device)
            ranks = base.random_ranks(positions, generator)
            n_encode, n_decode = base.exact_counts(
                positions.sum(-1), self.config.encode_ratio, self.config.decode_ratio, None
            )
            pattern = base.assign_by_rank(positions, ranks, n_encode, n_decode)
            pattern = einops.rearrange(pattern, "b (h w) -> b h w", h=height, w=width)
        masks = {}
        for name, p in present.items():
            if self.spec(name).is_spatial:
                _, _, _, steps, band_sets = p.shape
                mask = einops.repeat(pattern, "b h w -> b h w t s", t=steps, s=band_sets)
                masks[name] = mask.masked_fill(~p, MISSING)
            else:
                masks[name] = self.random_token_mask(name, p, generator)
        return masks


@dataclasses.dataclass(kw_only=True)
class TimeMaskingConfig(base.MaskingConfig):
    """Whole timesteps masked together (reference `time`)."""

    name = "time"

    min_timesteps: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.min_timesteps, bool) or not isinstance(self.min_timesteps, int):
            raise ValueError(
                f"TimeMaskingConfig.min_timesteps must be an int >= 2; got {self.min_timesteps!r}"
            )
        if self.min_timesteps < 2:
            raise ValueError(
                f"TimeMaskingConfig.min_timesteps must be >= 2 (one encoded and one decoded "
                f"timestep); got {self.min_timesteps}"
            )

    def build(self) -> TimeMasking:
        return TimeMasking(self)


class TimeMasking(RandomMasking):
    """Per sample, the timesteps where any multitemporal modality has data are split:
    `max(int(n * encode_ratio), 1)` encoded, `max(int(n * decode_ratio), 1)` decoded,
    the rest TARGET_ONLY; every patch, band set and multitemporal modality follows the
    split. A sample with fewer than `min_timesteps` (3, as the reference) present
    timesteps is randomly masked instead, and so are static modalities.

    The reference counts present timesteps over the whole batch; we count them per
    sample, so a sample's missing months never take an encoder or decoder slot.
    """

    config: TimeMaskingConfig

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        temporal = [name for name in present if self._is_temporal(name)]
        pattern, use_time = None, None
        if temporal:
            present_steps = None
            for name in temporal:
                # [B, h, w, T, S] -> [B, T]: does this timestep hold any token?
                steps = present[name].any(dim=(1, 2, 4))
                present_steps = steps if present_steps is None else present_steps | steps
            n_steps = present_steps.sum(-1)
            n_encode = base.floor_count(n_steps, self.config.encode_ratio).clamp(min=1)
            n_decode = base.floor_count(n_steps, self.config.decode_ratio).clamp(min=1)
            n_decode = torch.minimum(n_decode, (n_steps - n_encode).clamp(min=0))
            ranks = base.random_ranks(present_steps, generator)
            pattern = base.assign_by_rank(present_steps, ranks, n_encode, n_decode)
            use_time = n_steps >= self.config.min_timesteps
        masks = {}
        for name, p in present.items():
            fallback = self.random_token_mask(name, p, generator)
            if name in temporal:
                _, height, width, _, band_sets = p.shape
                timed = einops.repeat(pattern, "b t -> b h w t s", h=height, w=width, s=band_sets)
                timed = timed.masked_fill(~p, MISSING)
                masks[name] = torch.where(base.per_sample(use_time, timed), timed, fallback)
            else:
                masks[name] = fallback
        return masks

    def _is_temporal(self, name: str) -> bool:
        return self.spec(name).is_spacetime
