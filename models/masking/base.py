"""The masking-strategy base class, its config, and the vectorised primitives strategies share.

A masking strategy turns a `Sample` into a `MaskedSample`: for every modality a mask
`[B, H, W, T, S]` (non-spatial modalities `[B, S]`) whose values are `MaskValue`s:

    ONLINE_ENCODER  the online encoder sees the token;
    TARGET_ONLY     hidden and not predicted (only the target encoder sees it);
    DECODER         hidden; the decoder must predict its target latent;
    MISSING         there is no data (every band of the band set is MISSING_VALUE).

Every strategy decides per token, i.e. per (patch, timestep, band set), and then expands
the decision to the P x P pixels of the patch, because the patch embedding reads a
patch's mask from one pixel. MISSING is then written exactly where a band set has no
data, pixel by pixel. A token counts as present when any pixel of its patch has data.
(A strategy that drops whole modalities on purpose marks their tokens MISSING too; see
`models.masking.selectable` and `models.masking.fixed_modality`.)

Rules every strategy obeys (enforced here, after the strategy's own decisions):
1. Decode-only modalities (`only_decode_modalities`, by default the six maps) never get
   ONLINE_ENCODER: a would-be encoder token of a map becomes TARGET_ONLY.
2. Every sample keeps at least one ONLINE_ENCODER and one DECODER token when its data
   allows: a sample left without either is re-drawn by per-modality random masking of
   its encodable modalities (the reference does this repair in its cross-modal masking;
   we apply it to every strategy so no sample is wasted).

Strategies run in DataLoader worker processes: pure torch, no model imports, and all
randomness comes from the `torch.Generator` passed to `apply`, so a seed fixes the masks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import einops
import torch

from models.config.configurable import Configurable
from models.modalities import modalities
from models.modalities.samples import (
    MASK_DTYPE,
    MaskedSample,
    MaskValue,
    Sample,
    missing_band_set_mask,
)

DECODE_ONLY_MODALITIES: tuple[str, ...] = tuple(
    name for name, spec in modalities.MODALITIES.items() if spec.decode_only
)
"""The registry's decode-only maps (worldcover, srtm, OSM raster, canopy height, CDL,
WorldCereal): the v1 recipe predicts them but never encodes them."""

ENCODER = int(MaskValue.ONLINE_ENCODER)
TARGET = int(MaskValue.TARGET_ONLY)
DECODER = int(MaskValue.DECODER)
MISSING = int(MaskValue.MISSING)


def check_ratio(owner: str, field: str, value: float) -> None:
    """Raise a ValueError naming `owner.field` unless `value` is a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{owner}.{field} must be a number in [0, 1]; got {value!r}")


def check_modality_names(owner: str, field: str, names: tuple[str, ...]) -> None:
    """Raise a ValueError naming `owner.field` and the valid names for any unknown name."""
    unknown = [name for name in names if name not in modalities.MODALITIES]
    if unknown:
        raise ValueError(
            f"{owner}.{field} has unknown modalities {unknown}; "
            f"valid modalities are {list(modalities.MODALITIES)}"
        )


@dataclasses.dataclass(kw_only=True)
class MaskingConfig(Configurable["MaskingStrategy"]):
    """Fields every masking strategy has.

    Attributes:
        encode_ratio: fraction of tokens given to the online encoder (how it is applied
            depends on the strategy: per sample, per patch, per timestep).
        decode_ratio: fraction of tokens the decoder must predict; the rest of the
            present tokens are TARGET_ONLY. `encode_ratio + decode_ratio <= 1`.
        only_decode_modalities: modalities that are never encoded, only predicted.
        tokenization: the band grouping, which fixes S per modality. It must be the
            one the model and the dataset use.
    """

    name: ClassVar[str] = ""

    encode_ratio: float = 0.5
    decode_ratio: float = 0.5
    only_decode_modalities: tuple[str, ...] = DECODE_ONLY_MODALITIES
    tokenization: modalities.Tokenization = dataclasses.field(
        default_factory=lambda: modalities.DEFAULT_TOKENIZATION
    )

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_ratio(owner, "encode_ratio", self.encode_ratio)
        check_ratio(owner, "decode_ratio", self.decode_ratio)
        if self.encode_ratio + self.decode_ratio > 1:
            raise ValueError(
                f"{owner}.encode_ratio + decode_ratio must be <= 1; got "
                f"{self.encode_ratio} + {self.decode_ratio}"
            )
        if isinstance(self.only_decode_modalities, str):
            raise ValueError(
                f"{owner}.only_decode_modalities must be a sequence of modality names, "
                f"not the string {self.only_decode_modalities!r}"
            )
        self.only_decode_modalities = tuple(self.only_decode_modalities)
        check_modality_names(owner, "only_decode_modalities", self.only_decode_modalities)
        if not isinstance(self.tokenization, modalities.Tokenization):
            raise ValueError(
                f"{owner}.tokenization must be a models.modalities.modalities.Tokenization; "
                f"got {type(self.tokenization).__name__}"
            )

    def build(self) -> MaskingStrategy:
        raise NotImplementedError(f"{type(self).__name__} does not define build()")


# ---------------------------------------------------------------------------------------
# Vectorised primitives. Shapes: a leading batch axis B, then any token axes.


def uniform(
    shape: tuple[int, ...], generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """U[0, 1) float64 draws from `generator` (on its own device), moved to `device`.

    float64 so that `floor(u * k)` never rounds up to k for the small k we draw from.
    """
    draws = torch.rand(shape, generator=generator, device=generator.device, dtype=torch.float64)
    return draws.to(device)


def random_ranks(eligible: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per row, a uniformly random order of the eligible entries.

    Args:
        eligible: bool `[B, N]`.

    Returns:
        long `[B, N]`: the n eligible entries of a row get ranks 0..n-1 in random order;
        ineligible entries get ranks >= n, so `ranks < k` picks k random eligible entries.
    """
    keys = uniform(tuple(eligible.shape), generator, eligible.device)
    keys = keys.masked_fill(~eligible, 2.0)  # after every eligible key, which is < 1
    order = keys.argsort(dim=-1, stable=True)
    positions = torch.arange(eligible.shape[-1], device=eligible.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, positions)


def uniform_int(low: torch.Tensor, high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per entry, an integer drawn uniformly from [low, high] (inclusive); needs high >= low."""
    span = high - low + 1
    draws = uniform(tuple(low.shape), generator, low.device)
    offset = torch.minimum((draws * span).long(), span - 1)
    return low + offset


def floor_count(n: torch.Tensor, ratio: float) -> torch.Tensor:
    """`int(n * ratio)` per entry, in float64 like Python's float product."""
    return torch.floor(n.to(torch.float64) * ratio).long()


def ceil_count(n: torch.Tensor, ratio: float) -> torch.Tensor:
    """`math.ceil(n * ratio)` per entry, in float64 like Python's float product."""
    return torch.ceil(n.to(torch.float64) * ratio).long()


def assign_by_rank(
    present: torch.Tensor, ranks: torch.Tensor, n_encode: torch.Tensor, n_decode: torch.Tensor
) -> torch.Tensor:
    """The first `n_encode` ranks of a row are ONLINE_ENCODER, the next `n_decode` DECODER.

    Args:
        present: bool `[B, N]`; absent entries become MISSING.
        ranks: `[B, N]` from `random_ranks(present, ...)`.
        n_encode, n_decode: long `[B]`.

    Returns:
        int8 `[B, N]`; present entries past both counts are TARGET_ONLY.
    """
    n_encode = n_encode.unsqueeze(-1)
    n_decode = n_decode.unsqueeze(-1)
    values = torch.full(ranks.shape, TARGET, dtype=MASK_DTYPE, device=ranks.device)
    values = values.masked_fill(ranks < n_encode + n_decode, DECODER)
    values = values.masked_fill(ranks < n_encode, ENCODER)
    return values.masked_fill(~present, MISSING)


def exact_counts(
    n: torch.Tensor, encode_ratio: float, decode_ratio: float, lone_token: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`int(n * encode_ratio)` encoder and `int(n * decode_ratio)` decoder tokens per row.

    Args:
        n: long `[B]`, present tokens per row.
        lone_token: what a row with exactly one present token gets (ENCODER or DECODER),
            since `int(1 * 0.5)` would leave it TARGET_ONLY and wasted; None keeps the
            plain counts.
    """
    n_encode = floor_count(n, encode_ratio)
    n_decode = floor_count(n, decode_ratio)
    if lone_token is not None:
        lone = n == 1
        n_encode = torch.where(lone, int(lone_token == ENCODER), n_encode)
        n_decode = torch.where(lone, int(lone_token == DECODER), n_decode)
    return n_encode, n_decode


def random_fill(
    present: torch.Tensor,
    encode_ratio: float,
    decode_ratio: float,
    generator: torch.Generator,
    lone_token: int | None = ENCODER,
) -> torch.Tensor:
    """Random masking with exact counts over each row's present tokens.

    Per row (first axis), `int(n * encode_ratio)` random present tokens are
    ONLINE_ENCODER, `int(n * decode_ratio)` others are DECODER, the remaining present
    ones TARGET_ONLY, and absent ones MISSING.

    Args:
        present: bool `[B, ...]`.

    Returns:
        int8 with the shape of `present`.
    """
    flat = present.reshape(present.shape[0], -1)
    ranks = random_ranks(flat, generator)
    n_encode, n_decode = exact_counts(flat.sum(-1), encode_ratio, decode_ratio, lone_token)
    return assign_by_rank(flat, ranks, n_encode, n_decode).reshape(present.shape)


def per_sample(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape `[B]` flags to broadcast against `like` `[B, ...]`."""
    return flags.reshape(flags.shape[0], *([1] * (like.dim() - 1)))


# ---------------------------------------------------------------------------------------


class MaskingStrategy:
    """Base class: subclasses implement `token_masks`, the per-token decisions.

    `apply` computes which tokens are present, asks the subclass for token masks, enforces
    the shared rules (see the module docstring) and expands tokens to pixels.
    """

    def __init__(self, config: MaskingConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    def spec(self, name: str) -> modalities.ModalitySpec:
        return self.config.tokenization.spec(name)

    def is_decode_only(self, name: str) -> bool:
        return name in self.config.only_decode_modalities

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """Per-token mask values, the subclass's decision.

        Args:
            present: per modality (canonical order), bool `[B, h, w, T, S]` (non-spatial
                `[B, S]`): True where the token has data.

        Returns:
            int8 masks of the same shapes; must be MISSING exactly where not present.
        """
        raise NotImplementedError

    def apply(self, sample: Sample, patch_size: int, generator: torch.Generator) -> MaskedSample:
        """Mask `sample` for one training view.

        Args:
            sample: normalised data with MISSING_VALUE where there is no data.
            patch_size: P, in 10 m pixels; H and W must be multiples of it.
            generator: the only source of randomness.
        """
        return self.apply_views(sample, patch_size, generator, num_views=1)[0]

    def apply_views(
        self, sample: Sample, patch_size: int, generator: torch.Generator, num_views: int = 2
    ) -> list[MaskedSample]:
        """`num_views` independent maskings of `sample` (the two views of a training batch).

        The views are those of `num_views` calls of `apply` with this generator, one after the
        other; only the missing-data masks, which depend on the data alone, are computed once
        instead of per view (they were half of the masking time: tools/bench/data.py).
        """
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int; got {patch_size!r}")
        missing_px, present = self._missing_and_present(sample, patch_size)
        return [
            self._masked_view(sample, patch_size, generator, missing_px, present)
            for _ in range(num_views)
        ]

    def _missing_and_present(
        self, sample: Sample, patch_size: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per modality: pixels where a band set has no data [B, H, W, T, S], and tokens that
        have data in at least one pixel of their patch [B, h, w, T, S] (non-spatial: [B, S])."""
        missing_px: dict[str, torch.Tensor] = {}
        present: dict[str, torch.Tensor] = {}
        for name in sample.modality_names:
            data = sample.data[name]
            spec = self.spec(name)
            missing = missing_band_set_mask(data, spec)
            missing_px[name] = missing
            if spec.is_spatial:
                batch, height, width, steps, sets = missing.shape
                if height % patch_size or width % patch_size:
                    raise ValueError(
                        f"{name}: H x W = {height} x {width} is not a multiple of "
                        f"patch_size {patch_size}"
                    )
                rows, cols = height // patch_size, width // patch_size
                # [B, h, p, w, q, T, S] is a view of the contiguous pixel mask: no copy.
                patches = missing.reshape(batch, rows, patch_size, cols, patch_size, steps, sets)
                present[name] = ~patches.all(dim=4).all(dim=2)
            else:
                present[name] = ~missing
        return missing_px, present

    def _masked_view(
        self,
        sample: Sample,
        patch_size: int,
        generator: torch.Generator,
        missing_px: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor],
    ) -> MaskedSample:
        token_masks = self.token_masks(present, generator)
        token_masks = self._hide_decode_only(token_masks)
        token_masks = self._ensure_encoder_and_decoder(token_masks, present, generator)
        masks = {}
        for name, token_mask in token_masks.items():
            if self.spec(name).is_spatial and patch_size > 1:
                # Repeating into pixels copies (unless h = w = 1, where einops may return an
                # expanded view: contiguous() copies then), so MISSING is written in place.
                token_mask = einops.repeat(
                    token_mask, "b h w t s -> b (h p) (w q) t s", p=patch_size, q=patch_size
                ).contiguous()
                masks[name] = token_mask.masked_fill_(missing_px[name], MISSING)
            else:
                masks[name] = token_mask.masked_fill(missing_px[name], MISSING).contiguous()
        return MaskedSample(data=dict(sample.data), masks=masks, timestamps=sample.timestamps)

    def _hide_decode_only(self, token_masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            name: mask.masked_fill(mask == ENCODER, TARGET) if self.is_decode_only(name) else mask
            for name, mask in token_masks.items()
        }

    def _ensure_encoder_and_decoder(
        self,
        token_masks: dict[str, torch.Tensor],
        present: Mapping[str, torch.Tensor],
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        """Re-draw, by plain random masking, the samples without an encoder or decoder token.

        Only encodable modalities are re-drawn (decode-only ones keep their tokens), each
        per sample over its present tokens with exact counts, a lone token going to the
        encoder. With the v1 ratios (0.5 / 0.5) any modality with >= 2 present tokens
        then holds both kinds.
        """
        first = next(iter(token_masks.values()), None)
        if first is None:
            return token_masks
        batch = first.shape[0]
        n_encoder = sum((m == ENCODER).reshape(batch, -1).sum(-1) for m in token_masks.values())
        n_decoder = sum((m == DECODER).reshape(batch, -1).sum(-1) for m in token_masks.values())
        redraw = (n_encoder == 0) | (n_decoder == 0)
        if not bool(redraw.any()):
            return token_masks
        repaired = dict(token_masks)
        for name, mask in token_masks.items():
            if self.is_decode_only(name):
                continue
            fill = random_fill(
                present[name], self.config.encode_ratio, self.config.decode_ratio, generator
            )
            repaired[name] = torch.where(per_sample(redraw, mask), fill, mask)
        return repaired
