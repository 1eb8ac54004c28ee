"""Cross-modal masking over band sets: `modality_cross_random`, the OlmoEarth v1 default.

Two stages:
1. Random token masking (`random`): per sample and modality, half the tokens to the
   encoder and half to the decoder (v1 ratios 0.5 / 0.5).
2. Per sample, choose which (modality, band set) pairs may be encoded and which decoded,
   so the model must predict some band sets from others:
   - a band set is *present* if it has an encoder token after stage 1 (a decode-only
     map: if it has any data);
   - with 3+ present band sets, draw k_enc uniformly in [min, max] (v1: 2 .. all encodable)
     and encode k_enc random encodable ones; draw k_dec uniformly in [1, all present]
     and decode k_dec random present ones (overlap allowed in v1);
   - with 2 present, the first encodable one (registry order) is encoded and the other
     decoded; with 1 present, it is encoded and nothing decoded.
   Then, per band set: if not encoded, its encoder tokens become TARGET_ONLY and its
   decoder tokens stay (nothing of it is visible, so every hidden token may be predicted:
   this is what the reference code does); if encoded but not decoded, its decoder
   tokens become TARGET_ONLY; if both, stage 1's split stays.
A sample left without encoder or decoder tokens is re-drawn by random masking (base rule).

Differences from the reference, on purpose: a decode-only map is never the encoded
band set in the 1- or 2-present cases (the reference would encode it if it came first),
and presence of a map is judged per band set rather than per modality (maps have one).
"""

from __future__ import annotations

import dataclasses

import torch

from models.masking import base
from models.masking.base import DECODER, ENCODER, TARGET
from models.masking.random_space_time import RandomMasking


@dataclasses.dataclass(kw_only=True)
class ModalityCrossRandomMaskingConfig(base.MaskingConfig):
    """Random masking, then per-sample choice of encoded and decoded band sets.

    Attributes:
        allow_encoding_decoding_same_bandset: if True (v1) a band set may be both encoded
            and decoded; if False every present band set not encoded is decoded.
        min_encoded_bandsets: fewest encodable band sets to encode per sample (>= 2,
            capped by how many the sample has); None encodes all of them.
        max_encoded_bandsets: most band sets to encode; None means all encodable (minus
            one when encoded and decoded sets must be disjoint).
        min_decoded_bandsets, max_decoded_bandsets: bounds on the decoded band sets when
            overlap is allowed; None means 1 and all present.
    """

    name = "modality_cross_random"

    allow_encoding_decoding_same_bandset: bool = True
    min_encoded_bandsets: int | None = 2
    max_encoded_bandsets: int | None = None
    min_decoded_bandsets: int | None = None
    max_decoded_bandsets: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        for field in (
            "min_encoded_bandsets",
            "max_encoded_bandsets",
            "min_decoded_bandsets",
            "max_decoded_bandsets",
        ):
            value = getattr(self, field)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{owner}.{field} must be None or an int >= 1; got {value!r}")
        if self.min_encoded_bandsets is None:
            if self.max_encoded_bandsets is not None:
                raise ValueError(
                    f"{owner}.max_encoded_bandsets needs min_encoded_bandsets; got "
                    f"min None, max {self.max_encoded_bandsets}"
                )
        elif self.min_encoded_bandsets < 2:
            # As the reference: encoding a single band set could mean encoding only a
            # batch-level modality such as lat/lon.
            raise ValueError(
                f"{owner}.min_encoded_bandsets must be None or >= 2; "
                f"got {self.min_encoded_bandsets}"
            )
        for low, high in (
            ("min_encoded_bandsets", "max_encoded_bandsets"),
            ("min_decoded_bandsets", "max_decoded_bandsets"),
        ):
            low_value, high_value = getattr(self, low), getattr(self, high)
            if low_value is not None and high_value is not None and high_value < low_value:
                raise ValueError(f"{owner}.{high} must be >= {low}; got {high_value} < {low_value}")
        if not isinstance(self.allow_encoding_decoding_same_bandset, bool):
            raise ValueError(
                f"{owner}.allow_encoding_decoding_same_bandset must be True or False; "
                f"got {self.allow_encoding_decoding_same_bandset!r}"
            )

    def build(self) -> ModalityCrossRandomMasking:
        return ModalityCrossRandomMasking(self)


class ModalityCrossRandomMasking(RandomMasking):
    """See the module docstring."""

    config: ModalityCrossRandomMaskingConfig

    def token_masks(
        self, present: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        stage1 = super().token_masks(present, generator)
        if not stage1:
            return stage1
        band_sets = [(name, s) for name, mask in stage1.items() for s in range(mask.shape[-1])]
        batch = next(iter(stage1.values())).shape[0]
        device = next(iter(stage1.values())).device
        candidates = []
        for name, s in band_sets:
            if self.is_decode_only(name):
                flags = present[name][..., s].reshape(batch, -1).any(-1)
            else:
                flags = (stage1[name][..., s] == ENCODER).reshape(batch, -1).any(-1)
            candidates.append(flags)
        candidate = torch.stack(candidates, dim=-1)  # [B, K]
        encodable = torch.tensor(
            [not self.is_decode_only(name) for name, _ in band_sets], device=device
        )
        encoded, decoded = self.choose_band_sets(candidate, encodable, generator)
        masks = {}
        for name, mask in stage1.items():
            columns = []
            for s in range(mask.shape[-1]):
                k = band_sets.index((name, s))
                values = mask[..., s]
                is_encoded = base.per_sample(encoded[:, k], values)
                is_decoded = base.per_sample(decoded[:, k], values)
                if self.follows_band_set_choice(name):
                    has_data = present[name][..., s]
                    values = values.masked_fill(is_decoded & ~is_encoded & has_data, DECODER)
                    columns.append(values.masked_fill(is_encoded & has_data, ENCODER))
                    continue
                values = values.masked_fill(~is_encoded & (values == ENCODER), TARGET)
                values = values.masked_fill(is_encoded & ~is_decoded & (values == DECODER), TARGET)
                columns.append(values)
            masks[name] = torch.stack(columns, dim=-1)
        return masks

    def follows_band_set_choice(self, name: str) -> bool:
        """True for a modality that stage 1 cannot structure (lat/lon under space masking):
        each of its band sets is then wholly ONLINE_ENCODER if chosen for encoding, else
        wholly DECODER if chosen for decoding, else left as stage 1 drew it (the reference's
        `overide_strategy_mask`). Random stage-1 masking structures every modality."""
        return False

    def choose_band_sets(
        self, candidate: torch.Tensor, encodable: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Which band sets each sample encodes and decodes.

        Args:
            candidate: bool `[B, K]`, the present band sets (module docstring).
            encodable: bool `[K]`, False for decode-only modalities.

        Returns:
            (encoded, decoded), bool `[B, K]` each.
        """
        config = self.config
        encodable_candidate = candidate & encodable
        n_present = candidate.sum(-1)
        n_encodable = encodable_candidate.sum(-1)

        upper = n_encodable
        if not config.allow_encoding_decoding_same_bandset:
            upper = (n_encodable - 1).clamp(min=0)  # keep one band set to decode
        max_encoded = upper
        if config.max_encoded_bandsets is not None:
            max_encoded = upper.clamp(max=config.max_encoded_bandsets)
        min_encoded = n_encodable
        if config.min_encoded_bandsets is not None:
            min_encoded = n_encodable.clamp(max=config.min_encoded_bandsets)
        min_encoded = torch.minimum(min_encoded, max_encoded)
        n_encoded = base.uniform_int(min_encoded, max_encoded, generator)
        encode_ranks = base.random_ranks(encodable_candidate, generator)
        encoded = encodable_candidate & (encode_ranks < n_encoded.unsqueeze(-1))

        if config.allow_encoding_decoding_same_bandset:
            min_decoded = n_present.clamp(max=config.min_decoded_bandsets or 1)
            max_decoded = n_present
            if config.max_decoded_bandsets is not None:
                max_decoded = n_present.clamp(max=config.max_decoded_bandsets)
            n_decoded = base.uniform_int(min_decoded, max_decoded, generator)
            decode_ranks = base.random_ranks(candidate, generator)
            decoded = candidate & (decode_ranks < n_decoded.unsqueeze(-1))
        else:
            decoded = candidate & ~encoded

        # Two present: encode the first encodable one, decode the other. One present:
        # encode it (if encodable), decode nothing.
        first_encodable = encodable_candidate & (encodable_candidate.cumsum(-1) == 1)
        one = (n_present == 1).unsqueeze(-1)
        two = (n_present == 2).unsqueeze(-1)
        encoded = torch.where(one | two, first_encodable, encoded)
        decoded = torch.where(two, candidate & ~first_encodable, decoded)
        decoded = decoded & ~one
        return encoded, decoded
