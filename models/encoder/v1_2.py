"""The OlmoEarth v1.2 encoder: v1.1 plus RoPE, optional register tokens and optional qk-norm.

What changes against v1.1 (models/encoder/v1_1.py), and nothing else:
- position encoding (`rope`, a models/nn/rope.RopeConfig; v1.2: rope_3d_mixed): q and k of
  every attention layer are rotated by the token's (t, row, col) (models/nn/rope.py), so the
  additive spatial quarter is dropped (and, under the 3-D kinds, the time-slot quarter);
  `rope=None` keeps v1's absolute encodings. Positions are built per modality before the
  visible tokens are packed and follow them through the same permutation;
- `num_register_tokens` learnable tokens (xavier init) are prepended to each sample's visible
  tokens for the blocks, at RoPE position zero, and dropped before the final norm, so neither
  the token outputs nor the pooled vector contain them (as the reference);
- `qk_norm`: a LayerNorm over each head's features on q and k, before RoPE.

Every v1.1 step (per-pixel patch embeddings, band dropout, decode-only maps, the final norm on
real tokens only, pooling) is inherited.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from models.encoder.encoder import EncoderOutput
from models.encoder.v1_1 import EncoderV11, EncoderV11Config
from models.modalities.samples import MaskedSample, TokensAndMasks
from models.nn import rope, sequence, varlen
from models.nn.init import xavier_init_linears_


@dataclasses.dataclass
class PositionedTokens(sequence.PackedTokens):
    """`PackedTokens` with the RoPE coordinates of its tokens: positions [B, L, A] (None without
    RoPE), packed by the same permutation."""

    positions: Tensor | None = None


@dataclasses.dataclass(kw_only=True)
class EncoderV12Config(EncoderV11Config):
    """Configuration of `EncoderV12`: `EncoderV11Config` plus the v1.2 attention options.

    Attributes:
        rope: how q/k are rotated (models/nn/rope.RopeConfig; v1.2: rope_3d_mixed, mixed base
            1e4, time = days since 2000 / 30); None keeps v1's absolute encodings.
        num_register_tokens: learnable tokens that join every sample in attention (0 in the
            reference's scripts).
        qk_norm: LayerNorm on each head's q and k (off in the reference's scripts).
    """

    rope: rope.RopeConfig | None = dataclasses.field(default_factory=rope.RopeConfig)
    num_register_tokens: int = 0
    qk_norm: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        rope.check_rope_field(owner, self.rope, self.width, self.num_heads)
        if self.num_register_tokens < 0:
            raise ValueError(
                f"{owner}.num_register_tokens must be >= 0, got {self.num_register_tokens}"
            )

    def build(self) -> EncoderV12:
        return EncoderV12(self)


class EncoderV12(EncoderV11):
    """v1.1's encoder with RoPE, register tokens and qk-norm; see the module docstring."""

    def __init__(self, config: EncoderV12Config):
        super().__init__(config)
        width, heads = config.width, config.num_heads
        if config.rope is not None:
            # Same attribute, same band-set embeddings: only the added quarters differ.
            self.encodings = rope.RopeEncodings(
                width, config.specs, config.max_patch_size, kind=config.rope.kind
            )
            for name in config.decode_only_modalities:
                self.encodings.channel_embeddings[name].requires_grad_(False)
        self.blocks = nn.ModuleList(
            rope.RopeBlock(
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
        self.register_tokens: nn.Parameter | None = None
        if config.num_register_tokens:
            self.register_tokens = nn.Parameter(torch.empty(config.num_register_tokens, width))
            nn.init.xavier_uniform_(self.register_tokens)

    def rope_positions(
        self, embedded: TokensAndMasks, timestamps: Tensor, patch_size: int, input_res_m: float
    ) -> Tensor | None:
        """[B, N, A] RoPE coordinates in the order of `collapse_and_combine_hwtc`, or None."""
        if self.config.rope is None:
            return None
        per_modality = self.config.rope.positions(
            embedded.tokens, timestamps, patch_size, input_res_m
        )
        positions, _, _ = sequence.collapse(per_modality, embedded.masks)
        return positions

    @staticmethod
    def pack_positions(positions: Tensor | None, packed: sequence.PackedTokens) -> Tensor | None:
        """Positions [B, N, A] through the permutation that packed the tokens -> [B, L, A]."""
        if positions is None or packed.indices is None:
            return positions
        length = packed.tokens.shape[1]
        index = packed.indices[:, :length, None].expand(-1, -1, positions.shape[-1])
        return positions.gather(1, index)

    def run_blocks(self, packed: sequence.PackedTokens) -> Tensor:
        """v1's `run_blocks` with the RoPE positions of `packed` (a `PositionedTokens`) and the
        register tokens prepended to every sample (at position zero; removed again from the
        output) -> [B, L, D], zeros at padding."""
        positions = getattr(packed, "positions", None)
        if self.config.rope is not None and positions is None:
            raise ValueError(
                "EncoderV12 with RoPE needs the packed tokens' positions: pass a PositionedTokens "
                "(forward builds one)"
            )
        x, kept = packed.tokens, packed.kept
        lengths = packed.varlen or varlen.Varlen.from_mask(kept)
        registers = 0 if self.register_tokens is None else self.register_tokens.shape[0]
        if registers:
            batch = x.shape[0]
            x = torch.cat([self.register_tokens.to(x.dtype).expand(batch, -1, -1), x], dim=1)
            kept = torch.cat([kept.new_ones(batch, registers), kept], dim=1)
            if positions is not None:
                positions = torch.cat(
                    [positions.new_zeros(batch, registers, positions.shape[-1]), positions], dim=1
                )
            lengths = varlen.Varlen(tuple(n + registers for n in lengths.lengths), lengths.device)
        if x.shape[1] == 0:  # no sample has a visible token and there are no registers
            return x
        flat = varlen.flatten(x, kept, lengths)
        flat_positions = None if positions is None else varlen.flatten(positions, kept, lengths)
        for block in self.blocks:
            flat = block(flat, varlen=lengths, positions=flat_positions)
        return varlen.unflatten(flat, kept, lengths)[:, registers:]

    def forward(
        self,
        x: MaskedSample,
        patch_size: int,
        input_res_m: float = 10.0,
        fast_pass: bool = False,
    ) -> EncoderOutput:
        """As `Encoder.forward`, with RoPE positions built next to the encodings and packed with
        the tokens; v1's `apply_attn` (a variant's hook) then runs with them."""
        self.check_patch_size(patch_size)
        if not self.encodable_names(x):
            raise ValueError(
                f"the sample has none of the encodable modalities "
                f"{list(self.config.encodable_modalities)}; it has {list(x.modality_names)}"
            )
        embedded = self.embed_patches(x, patch_size)
        positions = self.rope_positions(embedded, x.timestamps, patch_size, input_res_m)
        embedded = self.apply_composite_encodings(embedded, x.timestamps, patch_size, input_res_m)
        tokens, mask, layout = self.collapse_and_combine_hwtc(embedded)
        packed = self.remove_masked_tokens(tokens, mask, fast_pass)
        packed = PositionedTokens(
            **{field.name: getattr(packed, field.name) for field in dataclasses.fields(packed)},
            positions=self.pack_positions(positions, packed),
        )
        encoded = TokensAndMasks(tokens=self.apply_attn(packed, layout), masks=embedded.masks)
        return EncoderOutput(
            tokens_and_masks=self.with_decode_only_modalities(encoded, x, patch_size),
            pooled=self.pool_and_project(encoded),
        )
