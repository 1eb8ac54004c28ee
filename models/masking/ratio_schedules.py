"""Random masking with ratios that vary: `random_increasing` and `random_range`.

- random_increasing: the encode and decode ratios move linearly from their initial to
  their final values over `steps` calls (one call = one masked view), then stay at the
  final values; the reference's defaults go from 50% / 50% to 10% / 90%.
- random_range: every sample draws its own encode ratio uniformly in
  [min_encode_ratio, max_encode_ratio], and its decode ratio uniformly in
  [min_decode_ratio, max_decode_ratio] or, without a decode range, `1 - encode ratio`.
  As in the reference the draw is per sample and per modality.
Counts are exact per sample and modality over the tokens with data, as in `random`;
random_range keeps at least one encoded and one decoded token where a sample and
modality has two or more (the reference can leave none: `int(3 * 0.1)` is 0).
Lat/lon (one token per sample) is drawn over the whole batch with the strategy's
`encode_ratio` / `decode_ratio`: the current ratios (random_increasing) or the midpoints
of the ranges (random_range), as in the reference.
"""

from __future__ import annotations

import dataclasses

import torch

from models.masking import base
from models.masking.random_space_time import RandomMasking


def _derived_ratio_field() -> float:
    """A ratio computed in `__post_init__` from the config's other fields; not an argument
    (so overrides of the fields it derives from cannot contradict it)."""
    return dataclasses.field(init=False, default=0.5)


def fill_with_sample_ratios(
    present: torch.Tensor,
    encode_ratios: torch.Tensor,
    decode_ratios: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random masking with exact counts and one pair of ratios per sample.

    Args:
        present: bool `[B, ...]`.
        encode_ratios, decode_ratios: float64 `[B]`; per sample `int(n * ratio)` of its n
            present tokens are encoded / decoded, at least one of each kind when n >= 2
            and the ratio is not 0 (a lone token is encoded, as in `random`).

    Returns:
        int8 with the shape of `present`.
    """
    flat = present.reshape(present.shape[0], -1)
    ranks = base.random_ranks(flat, generator)
    n = flat.sum(-1)
    n_encode = torch.floor(n.to(torch.float64) * encode_ratios).long()
    n_decode = torch.floor(n.to(torch.float64) * decode_ratios).long()
    # Two or more tokens keep one of each kind when the ratio is not 0: a sample drawing
    # a 0.1 ratio over 3 S2 tokens would otherwise encode none, and the base repair, at
    # the midpoint ratios, cannot always mend it (0.3 of 3 is still 0).
    several = n >= 2
    n_encode = torch.where(several & (encode_ratios > 0), n_encode.clamp(min=1), n_encode)
    wanted_decode = torch.where(several & (decode_ratios > 0), n_decode.clamp(min=1), n_decode)
    n_decode = torch.minimum(wanted_decode, n - n_encode)
    lone = n == 1
    n_encode = torch.where(lone, 1, n_encode)
    n_decode = torch.where(lone, 0, n_decode)
    return base.assign_by_rank(flat, ranks, n_encode, n_decode).reshape(present.shape)


def _pooled_fill(
    present: torch.Tensor, encode_ratio: float, decode_ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """Random masking over the whole batch at once (lat/lon: one token per sample)."""
    pooled = present.reshape(1, -1)
    return base.random_fill(pooled, encode_ratio, decode_ratio, generator).reshape(present.shape)


@dataclasses.dataclass(kw_only=True)
class RandomIncreasingMaskingConfig(base.MaskingConfig):
    """Random masking whose ratios move linearly over calls (reference `random_increasing`).

    Attributes:
        initial_encode_ratio, initial_decode_ratio: the ratios before the first call.
        final_encode_ratio, final_decode_ratio: the ratios from call `steps` on.
        steps: calls (masked views) over which the ratios move.
        encode_ratio, decode_ratio: derived (not arguments), the initial ratios; the base
            repair rule uses them.
    """

    name = "random_increasing"

    initial_encode_ratio: float = 0.5
    final_encode_ratio: float = 0.1
    initial_decode_ratio: float = 0.5
    final_decode_ratio: float = 0.9
    steps: int = 1000
    encode_ratio: float = _derived_ratio_field()
    decode_ratio: float = _derived_ratio_field()

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for field in (
            "initial_encode_ratio",
            "final_encode_ratio",
            "initial_decode_ratio",
            "final_decode_ratio",
        ):
            base.check_ratio(owner, field, getattr(self, field))
        for stage in ("initial", "final"):
            encode = getattr(self, f"{stage}_encode_ratio")
            decode = getattr(self, f"{stage}_decode_ratio")
            # Both ends <= 1 keeps every interpolated pair <= 1 (a convex combination).
            if encode + decode > 1:
                raise ValueError(
                    f"{owner}.{stage}_encode_ratio + {stage}_decode_ratio must be <= 1; "
                    f"got {encode} + {decode}"
                )
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"{owner}.steps must be an int >= 1; got {self.steps!r}")
        self.encode_ratio = self.initial_encode_ratio
        self.decode_ratio = self.initial_decode_ratio
        super().__post_init__()

    def build(self) -> RandomIncreasingMasking:
        return RandomIncreasingMasking(self)


class RandomIncreasingMasking(RandomMasking):
    """See the module docstring.

    The schedule counts the calls of this strategy object, as the reference does: each
    DataLoader worker holds its own copy, so with k workers the ratios move k times
    slower per trained step, and a resumed run starts the schedule again. The masks of
    one call are a function of the generator and of `calls` (pickled with the strategy).
    """

    config: RandomIncreasingMaskingConfig

    def __init__(self, config: RandomIncreasingMaskingConfig) -> None:
        super().__init__(config)
        self.calls = 0

    def ratios_at(self, call: int) -> tuple[float, float]:
        """The (encode, decode) ratios used by call number `call` (1-based)."""
        config = self.config
        if call >= config.steps:
            # Exactly the final ratios: 0.5 + (0.1 - 0.5) * 1.0 is 0.09999999999999998.
            return config.final_encode_ratio, config.final_decode_ratio
        progress = call / config.steps
        encode = (
            config.initial_encode_ratio
            + (config.final_encode_ratio - config.initial_encode_ratio) * progress
        )
        decode = (
            config.initial_decode_ratio
            + (config.final_decode_ratio - config.initial_decode_ratio) * progress
        )
        return encode, decode

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        self.calls += 1
        encode, decode = self.ratios_at(self.calls)
        masks = {}
        for name, p in present.items():
            if self.spec(name).is_spatial:
                masks[name] = base.random_fill(p, encode, decode, generator)
            else:
                masks[name] = _pooled_fill(p, encode, decode, generator)
        return masks


@dataclasses.dataclass(kw_only=True)
class RandomRangeMaskingConfig(base.MaskingConfig):
    """Random masking with per-sample ratios drawn from ranges (reference `random_range`).

    Attributes:
        min_encode_ratio, max_encode_ratio: the range of a sample's encode ratio.
        min_decode_ratio, max_decode_ratio: the range of its decode ratio; both None
            (the default) for `1 - encode ratio`.
        encode_ratio, decode_ratio: derived (not arguments), the ranges' midpoints (the
            decode one `1 - encode midpoint` without a decode range); lat/lon and the base
            repair rule use them.
    """

    name = "random_range"

    min_encode_ratio: float = 0.1
    max_encode_ratio: float = 0.5
    min_decode_ratio: float | None = None
    max_decode_ratio: float | None = None
    encode_ratio: float = _derived_ratio_field()
    decode_ratio: float = _derived_ratio_field()

    def __post_init__(self) -> None:
        owner = type(self).__name__
        base.check_ratio(owner, "min_encode_ratio", self.min_encode_ratio)
        base.check_ratio(owner, "max_encode_ratio", self.max_encode_ratio)
        ranges = [("min_encode_ratio", "max_encode_ratio")]
        if (self.min_decode_ratio is None) != (self.max_decode_ratio is None):
            raise ValueError(
                f"{owner}.min_decode_ratio and max_decode_ratio must both be None or both "
                f"be set; got {self.min_decode_ratio!r} and {self.max_decode_ratio!r}"
            )
        if self.min_decode_ratio is not None:
            base.check_ratio(owner, "min_decode_ratio", self.min_decode_ratio)
            base.check_ratio(owner, "max_decode_ratio", self.max_decode_ratio)
            ranges.append(("min_decode_ratio", "max_decode_ratio"))
            if self.max_encode_ratio + self.max_decode_ratio > 1:
                raise ValueError(
                    f"{owner}.max_encode_ratio + max_decode_ratio must be <= 1; got "
                    f"{self.max_encode_ratio} + {self.max_decode_ratio}"
                )
        for low, high in ranges:
            if getattr(self, high) < getattr(self, low):
                raise ValueError(
                    f"{owner}.{high} must be >= {low}; got {getattr(self, high)} < "
                    f"{getattr(self, low)}"
                )
        self.encode_ratio = (self.min_encode_ratio + self.max_encode_ratio) / 2
        if self.min_decode_ratio is None:
            self.decode_ratio = 1 - self.encode_ratio
        else:
            self.decode_ratio = (self.min_decode_ratio + self.max_decode_ratio) / 2
        super().__post_init__()

    def build(self) -> RandomRangeMasking:
        return RandomRangeMasking(self)


class RandomRangeMasking(RandomMasking):
    """See the module docstring."""

    config: RandomRangeMaskingConfig

    def sample_ratios(
        self, batch: int, generator: torch.Generator, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 `[B]` encode and decode ratios, one pair per sample."""
        config = self.config
        span = config.max_encode_ratio - config.min_encode_ratio
        encode = config.min_encode_ratio + span * base.uniform((batch,), generator, device)
        if config.min_decode_ratio is None:
            return encode, 1 - encode
        span = config.max_decode_ratio - config.min_decode_ratio
        decode = config.min_decode_ratio + span * base.uniform((batch,), generator, device)
        return encode, decode

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        masks = {}
        for name, p in present.items():
            if self.spec(name).is_spatial:
                encode, decode = self.sample_ratios(p.shape[0], generator, p.device)
                masks[name] = fill_with_sample_ratios(p, encode, decode, generator)
            else:
                masks[name] = self.random_token_mask(name, p, generator)
        return masks
