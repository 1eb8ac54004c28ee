"""Worked example of an encoder variant: one Linear(D, D) per modality after attention.

Hypothesis: a per-modality transform of the encoder's output lets each modality's tokens live
in their own subspace before the shared final norm. Only the post-attention part of
`Encoder.apply_attn` changes; every other step is inherited. The order after the blocks:

    add removed tokens back -> split per modality -> per-modality Linear -> recombine
    -> shared final LayerNorm -> split back

so each transform sees the full restored grid of its modality, [B, h, w, T, S, D] (zeros at
removed positions), and the norm comes last. The transforms start as identities, so at
initialisation the variant reproduces the base encoder on the visible tokens. Removed positions
are zeroed again after the norm, keeping the encoder's output contract.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from models.encoder.encoder import Encoder, EncoderConfig
from models.nn import sequence


@dataclasses.dataclass(kw_only=True)
class EncoderWithPerModalityProjectionConfig(EncoderConfig):
    """`EncoderConfig` whose `build()` gives an `EncoderWithPerModalityProjection`."""

    def build(self) -> EncoderWithPerModalityProjection:
        return EncoderWithPerModalityProjection(self)


class EncoderWithPerModalityProjection(Encoder):
    """`Encoder` plus `modality_projections`: one Linear(D, D) per encodable modality.

    Decode-only modalities never reach attention, so they get no transform (it would never
    receive a gradient).
    """

    def __init__(self, config: EncoderWithPerModalityProjectionConfig):
        super().__init__(config)
        width = config.width
        self.modality_projections = nn.ModuleDict(
            {name: nn.Linear(width, width) for name in config.encodable_modalities}
        )
        with torch.no_grad():
            for projection in self.modality_projections.values():
                projection.weight.copy_(torch.eye(width))
                projection.bias.zero_()

    def apply_attn(
        self, packed: sequence.PackedTokens, layout: sequence.TokenLayout
    ) -> dict[str, Tensor]:
        x = self.run_blocks(packed)
        x = self.add_removed_tokens(x, packed)
        per_modality = self.split_and_expand_per_modality(x, layout)
        projected = {
            name: self.modality_projections[name](tokens) for name, tokens in per_modality.items()
        }
        x = self.norm(sequence.concat(projected, layout))
        # 1 at kept positions, 0 at removed ones (the scatter of add_removed_tokens).
        kept = self.add_removed_tokens(torch.ones_like(packed.tokens[:, :, :1]), packed)
        return self.split_and_expand_per_modality(x * kept, layout)
