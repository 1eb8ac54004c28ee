"""The OlmoEarth v1.2 predictor: v1's cross-attention decoder with RoPE and optional qk-norm.

What changes against v1 (models/predictor/predictor.py), and nothing else:
- `rope` (models/nn/rope.RopeConfig; v1.2: rope_3d_mixed, as the encoder): every block rotates
  the queries (DECODER tokens) by their own (t, row, col) and the keys (ONLINE_ENCODER context)
  by theirs. The coordinates are built per modality from the encoder output's layout and go
  through the same sort as the tokens (`split_queries_and_context`). The additive spatial
  quarter is dropped (and the time-slot quarter under the 3-D kinds); None keeps v1's;
- `qk_norm`: a LayerNorm over each head's q and k features, before RoPE.

In a batch where no sample has a context token, the one zero key slot of v1 takes the position
of the last token; the predictions of such a batch are meaningless either way (v1's docstring).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from models.modalities import modalities
from models.modalities.samples import MaskValue, TokensAndMasks
from models.nn import rope, sequence, varlen
from models.nn.init import xavier_init_linears_
from models.predictor.predictor import Predictor, PredictorConfig, QueriesAndContext


@dataclasses.dataclass
class PositionedQueriesAndContext(QueriesAndContext):
    """`QueriesAndContext` with the RoPE coordinates of every token in the original order:
    positions [B, N, A] (None without RoPE); `apply_attn` sorts them like the tokens."""

    positions: Tensor | None = None


@dataclasses.dataclass(kw_only=True)
class PredictorV12Config(PredictorConfig):
    """Configuration of `PredictorV12`: `PredictorConfig` plus the v1.2 attention options.

    Attributes:
        rope: how q/k are rotated (v1.2: rope_3d_mixed); None keeps v1's absolute encodings.
        qk_norm: LayerNorm on each head's q and k (off in the reference's scripts).
        tokenization: defaults to v1.1/v1.2's single band set for S2 and for Landsat.
    """

    rope: rope.RopeConfig | None = dataclasses.field(default_factory=rope.RopeConfig)
    qk_norm: bool = False
    tokenization: modalities.Tokenization = modalities.SINGLE_BANDSET_TOKENIZATION

    def __post_init__(self) -> None:
        super().__post_init__()
        rope.check_rope_field(type(self).__name__, self.rope, self.width, self.num_heads)

    def build(self) -> PredictorV12:
        return PredictorV12(self)


class PredictorV12(Predictor):
    """v1's predictor with RoPE and qk-norm; see the module docstring."""

    def __init__(self, config: PredictorV12Config):
        super().__init__(config)
        width, heads = config.width, config.num_heads
        if config.rope is not None:
            self.encodings = rope.RopeEncodings(
                width, config.specs, config.max_patch_size, kind=config.rope.kind
            )
        self.blocks = nn.ModuleList(
            rope.RopeCrossBlock(
                width,
                heads,
                config.mlp_ratio,
                config.drop_path,
                rope=None if config.rope is None else config.rope.build(heads, width // heads),
                qk_norm=config.qk_norm,
            )
            for _ in range(config.depth)
        )
        xavier_init_linears_(self.blocks)

    def apply_attn(self, split: QueriesAndContext) -> Tensor:
        """v1's `apply_attn` with the RoPE positions of `split` (a `PositionedQueriesAndContext`,
        positions in the original token order): queries rotate by theirs, keys by the context's."""
        positions = getattr(split, "positions", None)
        if self.config.rope is not None and positions is None:
            raise ValueError(
                "PredictorV12 with RoPE needs the tokens' positions: pass a "
                "PositionedQueriesAndContext (forward builds one)"
            )
        queries = split.queries
        if queries.shape[1] == 0:
            return queries
        query_lengths = split.query_varlen or varlen.Varlen.from_mask(split.query_mask)
        key_mask = split.key_mask
        key_lengths = split.key_varlen or varlen.Varlen.from_mask(key_mask)
        flat = varlen.flatten(queries, split.query_mask, query_lengths)
        context = varlen.flatten(split.context, key_mask, key_lengths)
        q_positions = kv_positions = None
        if positions is not None:
            index = split.indices[:, :, None].expand(-1, -1, positions.shape[-1])
            ordered = positions.gather(1, index)  # the order of split_queries_and_context
            total, num_context = ordered.shape[1], split.context.shape[1]
            q_positions = varlen.flatten(
                ordered[:, : queries.shape[1]], split.query_mask, query_lengths
            )
            kv_positions = varlen.flatten(ordered[:, total - num_context :], key_mask, key_lengths)
        for block in self.blocks:
            flat = block(
                flat,
                context,
                q_varlen=query_lengths,
                kv_varlen=key_lengths,
                q_positions=q_positions,
                kv_positions=kv_positions,
            )
        return varlen.unflatten(flat, split.query_mask, query_lengths)

    def forward(
        self,
        x: TokensAndMasks,
        timestamps: Tensor,
        patch_size: int,
        input_res_m: float = 10.0,
    ) -> TokensAndMasks:
        """As `Predictor.forward`, with RoPE positions built from the input's layout; v1's
        `apply_attn` (a variant's hook) then runs with them."""
        names = [name for name in x.modality_names if name in self.config.supported_modalities]
        if not names:
            raise ValueError(
                f"the encoder output has none of the supported modalities "
                f"{list(self.config.supported_modalities)}"
            )
        masks = {name: x.masks[name] for name in names}
        per_modality = {name: x.tokens[name] for name in names}
        tokens, mask, layout = sequence.collapse(per_modality, masks)
        positions = None
        if self.config.rope is not None:
            coordinates = self.config.rope.positions(
                per_modality, timestamps, patch_size, input_res_m
            )
            positions = sequence.concat(coordinates, layout)
        tokens = self.embed_visible_tokens(tokens, mask == MaskValue.ONLINE_ENCODER)
        tokens = self.add_mask_tokens(tokens, mask)
        tokens = self.apply_composite_encodings(tokens, layout, timestamps, patch_size, input_res_m)
        split = self.split_queries_and_context(tokens, mask)
        split = PositionedQueriesAndContext(
            **{field.name: getattr(split, field.name) for field in dataclasses.fields(split)},
            positions=positions,
        )
        decoded = self.apply_attn(split)
        tokens = self.combine_queries_and_context(decoded, split)
        return TokensAndMasks(tokens=self.project_output(tokens, layout), masks=masks)
