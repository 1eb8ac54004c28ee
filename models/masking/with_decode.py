"""`random_time_with_decode`, the OlmoEarth v1.1 / v1.2 masking, and `random_with_decode`,
its always-random form.

Per sample:
1. Decode-only maps: every token with data is DECODER.
2. The encodable band sets with data are shuffled; the first `ceil(n * encode_ratio)`
   are encode band sets, the rest decode band sets (v1.1 with one S2 and one Landsat
   band set: S2, S1, Landsat -> 2 encode, 1 decode).
3. With probability `random_ratio` (or when the sample has < 2 timesteps with data), the
   band sets are masked at random: an encode band set gets `int(n * encode_ratio)` of
   its n tokens as ONLINE_ENCODER (the rest TARGET_ONLY), a decode band set
   `int(n * decode_ratio)` as DECODER. Otherwise by time: the sample's timesteps with
   data (union over the encodable space-time band sets) are shuffled and the first
   `ceil(n_t * encode_ratio)` become encode timesteps, the rest decode timesteps; an
   encode band set is ONLINE_ENCODER at every encode timestep, a decode band set DECODER
   at every decode timestep, TARGET_ONLY elsewhere. A band set with no data at its
   timesteps, or without a time axis, falls back to the random rule.
4. A sample with a single encodable band set masks it at random with both ratios.

One difference from the reference, on purpose: a decode band set holding a single
token makes it DECODER; the reference's shared helper would make it ONLINE_ENCODER,
which breaks the encode/decode split of band sets.
"""

from __future__ import annotations

import dataclasses

import torch

from models.masking import base
from models.masking.base import DECODER, ENCODER, MISSING, TARGET
from models.modalities.samples import MASK_DTYPE


@dataclasses.dataclass(kw_only=True)
class RandomTimeWithDecodeMaskingConfig(base.MaskingConfig):
    """Band sets split into encode and decode roles; random or time masking inside.

    Attributes:
        random_ratio: probability that a sample uses random rather than time masking.
    """

    name = "random_time_with_decode"

    random_ratio: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        base.check_ratio(type(self).__name__, "random_ratio", self.random_ratio)

    def build(self) -> RandomTimeWithDecodeMasking:
        return RandomTimeWithDecodeMasking(self)


def _fill(
    present: torch.Tensor, ranks: torch.Tensor, encode_ratio: float, decode_ratio: float, lone: int
) -> torch.Tensor:
    """Exact-count random masking of `[B, N]` tokens from precomputed random ranks."""
    n_encode, n_decode = base.exact_counts(present.sum(-1), encode_ratio, decode_ratio, lone)
    return base.assign_by_rank(present, ranks, n_encode, n_decode)


class RandomTimeWithDecodeMasking(base.MaskingStrategy):
    """See the module docstring."""

    config: RandomTimeWithDecodeMaskingConfig

    @property
    def random_ratio(self) -> float:
        """Probability that a sample is masked at random rather than by time."""
        return self.config.random_ratio

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        config = self.config
        masks: dict[str, torch.Tensor] = {}
        for name, p in present.items():
            if self.is_decode_only(name):
                masks[name] = torch.full_like(p, DECODER, dtype=MASK_DTYPE).masked_fill(~p, MISSING)
        encodable = [name for name in present if not self.is_decode_only(name)]
        if not encodable:
            return masks
        first = present[encodable[0]]
        batch, device = first.shape[0], first.device
        band_sets = [(name, s) for name in encodable for s in range(present[name].shape[-1])]
        has_data = torch.stack(
            [present[name][..., s].reshape(batch, -1).any(-1) for name, s in band_sets], dim=-1
        )  # [B, K]
        n_band_sets = has_data.sum(-1)
        encode_ranks = base.random_ranks(has_data, generator)
        encode_role = has_data & (
            encode_ranks < base.ceil_count(n_band_sets, config.encode_ratio).unsqueeze(-1)
        )
        single = n_band_sets == 1

        # The sample's timesteps with data, over encodable space-time band sets: [B, T].
        spacetime = [name for name in encodable if self.spec(name).is_spacetime]
        use_random = torch.ones(batch, dtype=torch.bool, device=device)
        encode_steps = decode_steps = None
        if spacetime:
            steps_with_data = torch.stack(
                [present[name].any(dim=(1, 2, 4)) for name in spacetime]
            ).any(0)
            n_steps = steps_with_data.sum(-1)
            coin = base.uniform((batch,), generator, device)
            use_random = (n_steps <= 1) | (coin < self.random_ratio)
            step_ranks = base.random_ranks(steps_with_data, generator)
            encode_steps = steps_with_data & (
                step_ranks < base.ceil_count(n_steps, config.encode_ratio).unsqueeze(-1)
            )
            decode_steps = steps_with_data & ~encode_steps

        columns: dict[str, list[torch.Tensor]] = {name: [] for name in encodable}
        for k, (name, s) in enumerate(band_sets):
            p = present[name][..., s]  # [B, h, w, T] (lat/lon: [B])
            # One random order of the band set's tokens serves all three random rules.
            flat = p.reshape(batch, -1)
            ranks = base.random_ranks(flat, generator)
            as_encode = _fill(flat, ranks, config.encode_ratio, 0.0, ENCODER).reshape(p.shape)
            as_decode = _fill(flat, ranks, 0.0, config.decode_ratio, DECODER).reshape(p.shape)
            as_single = _fill(flat, ranks, config.encode_ratio, config.decode_ratio, ENCODER)
            as_single = as_single.reshape(p.shape)
            if name in spacetime:
                as_encode = self._by_time(p, encode_steps, ENCODER, use_random, as_encode)
                as_decode = self._by_time(p, decode_steps, DECODER, use_random, as_decode)
            role = base.per_sample(encode_role[:, k], p)
            values = torch.where(role, as_encode, as_decode)
            values = torch.where(base.per_sample(single, p), as_single, values)
            columns[name].append(values.masked_fill(~p, MISSING))
        for name in encodable:
            masks[name] = torch.stack(columns[name], dim=-1)
        return {name: masks[name] for name in present}

    @staticmethod
    def _by_time(
        present: torch.Tensor,
        steps: torch.Tensor,
        value: int,
        use_random: torch.Tensor,
        random_values: torch.Tensor,
    ) -> torch.Tensor:
        """`value` at the chosen timesteps, TARGET_ONLY at the others, for samples using time
        masking whose band set has data at those timesteps; `random_values` elsewhere.

        Args:
            present: bool `[B, h, w, T]` for one band set.
            steps: bool `[B, T]`, the chosen timesteps.
        """
        at_steps = steps[:, None, None, :].expand_as(present)
        timed = torch.where(at_steps, value, TARGET).to(MASK_DTYPE)
        has_data_at_steps = (present & at_steps).reshape(present.shape[0], -1).any(-1)
        use_time = ~use_random & has_data_at_steps
        return torch.where(base.per_sample(use_time, present), timed, random_values)


@dataclasses.dataclass(kw_only=True)
class RandomWithDecodeMaskingConfig(base.MaskingConfig):
    """Band sets split into encode and decode roles, random masking inside
    (reference `random_with_decode`): `random_time_with_decode` with `random_ratio = 1`."""

    name = "random_with_decode"

    def build(self) -> RandomWithDecodeMasking:
        return RandomWithDecodeMasking(self)


class RandomWithDecodeMasking(RandomTimeWithDecodeMasking):
    """Every sample takes step 3's random rule (module docstring)."""

    random_ratio = 1.0
