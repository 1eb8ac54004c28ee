"""The OlmoEarth v1 predictor (decoder): cross-attention from mask tokens to visible tokens.

Steps (shapes: the legend in models/modalities/samples.py), each an overridable method:

1. `embed_encoder_tokens`: LayerNorm over the encoder width, then Linear to the decoder width,
   applied to the ONLINE_ENCODER tokens only (`embed_visible_tokens`): every other position is
   replaced by the mask token (DECODER) or dropped before attention (TARGET_ONLY, MISSING), so
   embedding them, about 3/4 of the positions of a v1 batch, only cost FLOPs.
2. `add_mask_tokens`: every DECODER position becomes the learnable mask token (zeros at init).
3. `apply_composite_encodings`: the decoder's own band-set, time, month and space encodings.
4. `split_queries_and_context`: a stable sort by mask value puts the DECODER tokens (queries)
   first and the ONLINE_ENCODER tokens (context) last; MISSING counts as TARGET_ONLY, so the
   unused tokens sit in the middle and are dropped.
5. `apply_attn`: cross-attention-only blocks. Queries attend to the context and never to each
   other; the context is not updated between blocks. The blocks run on each sample's real
   queries and context tokens only, packed back to back (models/nn/varlen.py): no padding.
6. `combine_queries_and_context`: decoded queries and the (unchanged) context back at their
   positions, zeros elsewhere.
7. `project_output`: LayerNorm then Linear to the output width (the encoder width by default),
   shared by every modality and band set, applied to every position.

The math follows the reference's Predictor (olmoearth-pretrain 0.1.2), including step 7
covering every position: TARGET_ONLY and MISSING positions come out as the projection of a zero
vector, and only DECODER positions are meant to be read.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from models.config.configurable import Configurable
from models.modalities import modalities
from models.modalities.samples import MaskValue, TokensAndMasks
from models.nn import sequence, varlen
from models.nn.attention import CrossBlock
from models.nn.encodings import CompositeEncodings
from models.nn.init import xavier_init_linears_
from models.nn.validation import check_transformer_shape, modality_names


@dataclasses.dataclass(kw_only=True)
class PredictorConfig(Configurable["Predictor"]):
    """Configuration of `Predictor`.

    Attributes:
        width: decoder token width (a multiple of 16 and of num_heads).
        depth: cross-attention blocks.
        num_heads: attention heads.
        encoder_width: width of the encoder tokens it reads.
        mlp_ratio: MLP hidden width / width.
        drop_path: stochastic-depth rate in [0, 1) (0 in v1).
        output_width: width of the predictions; None means encoder_width (the targets are
            patch embeddings of the encoder's width).
        supported_modalities: modalities it decodes (and reads as context).
        max_patch_size: largest patch size, for the cached spatial encodings.
        tokenization: band grouping into tokens; must match the encoder's.
    """

    width: int
    depth: int
    num_heads: int
    encoder_width: int
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    output_width: int | None = None
    supported_modalities: tuple[str, ...] = modalities.TRAINING_MODALITIES
    max_patch_size: int = 8
    tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_transformer_shape(
            owner, self.width, self.depth, self.num_heads, self.mlp_ratio, self.drop_path
        )
        if self.encoder_width <= 0:
            raise ValueError(f"{owner}.encoder_width must be positive, got {self.encoder_width}")
        if self.output_width is None:
            self.output_width = self.encoder_width
        if self.output_width <= 0:
            raise ValueError(f"{owner}.output_width must be positive, got {self.output_width}")
        self.supported_modalities = modality_names(
            self.supported_modalities, f"{owner}.supported_modalities"
        )
        if not self.supported_modalities:
            raise ValueError(f"{owner}.supported_modalities is empty; name at least one modality")
        if self.max_patch_size < 1:
            raise ValueError(f"{owner}.max_patch_size must be >= 1, got {self.max_patch_size}")
        if not isinstance(self.tokenization, modalities.Tokenization):
            raise ValueError(
                f"{owner}.tokenization must be a modalities.Tokenization, "
                f"got {type(self.tokenization).__name__}"
            )

    @property
    def specs(self) -> tuple[modalities.ModalitySpec, ...]:
        return self.tokenization.specs(self.supported_modalities)

    def build(self) -> Predictor:
        return Predictor(self)


@dataclasses.dataclass
class QueriesAndContext:
    """The decoder's two token groups after the sort by mask value.

    Attributes:
        queries: [B, Q, D]; sample b's DECODER tokens first (original order), then filler.
        query_mask: [B, Q] bool; True for real queries.
        context: [B, C, D]; sample b's ONLINE_ENCODER tokens last (original order).
        context_mask: [B, C] bool; True for real context tokens.
        attn_mask: [B, C] key padding mask for attention, or None when no sample is padded.
        indices: [B, N]; sorted position i of sample b came from position indices[b, i].
        query_varlen: real queries per sample (host ints), for packed blocks.
        key_varlen: keys per sample: its context tokens, or the one zero slot when it has none.
    """

    queries: Tensor
    query_mask: Tensor
    context: Tensor
    context_mask: Tensor
    attn_mask: Tensor | None
    indices: Tensor
    query_varlen: varlen.Varlen | None = None
    key_varlen: varlen.Varlen | None = None

    @property
    def key_mask(self) -> Tensor:
        """[B, C] bool: the context slots attention reads (attn_mask, or all of them)."""
        if self.attn_mask is not None:
            return self.attn_mask
        return torch.ones(self.context.shape[:2], dtype=torch.bool, device=self.context.device)


class Predictor(nn.Module):
    """See the module docstring; built from a `PredictorConfig`."""

    def __init__(self, config: PredictorConfig):
        super().__init__()
        self.config = config
        self.input_norm = nn.LayerNorm(config.encoder_width)
        self.encoder_to_decoder = nn.Linear(config.encoder_width, config.width)
        self.mask_token = nn.Parameter(torch.zeros(config.width))
        self.encodings = CompositeEncodings(config.width, config.specs, config.max_patch_size)
        self.blocks = nn.ModuleList(
            CrossBlock(config.width, config.num_heads, config.mlp_ratio, config.drop_path)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.width)
        self.build_output_projection()
        xavier_init_linears_(self)

    def build_output_projection(self) -> None:
        """Creates the output head: one Linear shared by every modality and band set."""
        self.to_output = nn.Linear(self.config.width, self.config.output_width)

    # -- steps 1-3 -----------------------------------------------------------------------------

    def embed_encoder_tokens(self, tokens: Tensor) -> Tensor:
        """[..., D_enc] -> [..., D]: LayerNorm, then Linear (per token)."""
        return self.encoder_to_decoder(self.input_norm(tokens))

    def embed_visible_tokens(self, tokens: Tensor, visible: Tensor) -> Tensor:
        """`embed_encoder_tokens` of the tokens [B, N, D_enc] where visible [B, N] is True;
        [B, N, D] with zeros at the other positions."""
        embedded = self.embed_encoder_tokens(tokens[visible])
        out = embedded.new_zeros(*visible.shape, embedded.shape[-1])
        return out.index_put((visible,), embedded)

    def add_mask_tokens(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """DECODER positions take the learnable mask token."""
        is_decoder = (mask == MaskValue.DECODER)[:, :, None]
        return torch.where(is_decoder, self.mask_token.to(tokens.dtype), tokens)

    def apply_composite_encodings(
        self,
        tokens: Tensor,
        layout: sequence.TokenLayout,
        timestamps: Tensor,
        patch_size: int,
        input_res_m: float,
    ) -> Tensor:
        per_modality = sequence.split(tokens, layout)
        encoded = self.encodings(per_modality, timestamps, patch_size, input_res_m)
        return torch.cat(
            [encoded[name].reshape(tokens.shape[0], -1, tokens.shape[-1]) for name in layout.names],
            dim=1,
        )

    # -- steps 4-6 -----------------------------------------------------------------------------

    def split_queries_and_context(self, tokens: Tensor, mask: Tensor) -> QueriesAndContext:
        """Sorts by mask value (DECODER > TARGET_ONLY = MISSING > ONLINE_ENCODER), stable."""
        mask = torch.where(
            mask == MaskValue.MISSING, torch.full_like(mask, MaskValue.TARGET_ONLY), mask
        )
        sorted_mask, indices = torch.sort(mask.int(), dim=1, descending=True, stable=True)
        tokens = tokens.gather(1, indices[:, :, None].expand_as(tokens))
        is_query = sorted_mask == MaskValue.DECODER
        is_context = sorted_mask == MaskValue.ONLINE_ENCODER
        query_counts, context_counts = is_query.sum(dim=1), is_context.sum(dim=1)
        query_lengths, context_lengths = torch.stack([query_counts, context_counts]).tolist()
        # ^ one host sync
        num_queries, num_context = max(query_lengths), max(context_lengths)
        fewest_context = min(context_lengths)
        # A sample without context attends to one zero slot (below): one key.
        key_lengths = [max(n, 1) if num_context else 1 for n in context_lengths]
        total = tokens.shape[1]
        context = tokens[:, total - num_context :]
        context_mask = is_context[:, total - num_context :]
        attn_mask = None if fewest_context == num_context else context_mask
        if num_context == 0:
            # Nothing visible anywhere in the batch: one zero key keeps attention finite.
            context = tokens.new_zeros(tokens.shape[0], 1, tokens.shape[-1])
            context_mask = torch.zeros(tokens.shape[0], 1, dtype=torch.bool, device=tokens.device)
        elif fewest_context == 0:
            # A sample without visible tokens attends to one zeroed slot (finite softmax); its
            # predictions are meaningless either way, and the other samples are unaffected.
            context = context * context_mask[:, :, None]
            empty = (context_counts == 0)[:, None]
            first = torch.arange(num_context, device=tokens.device)[None, :] == 0
            attn_mask = context_mask | (empty & first)
        return QueriesAndContext(
            queries=tokens[:, :num_queries],
            query_mask=is_query[:, :num_queries],
            context=context,
            context_mask=context_mask,
            attn_mask=attn_mask,
            indices=indices,
            query_varlen=varlen.Varlen(tuple(query_lengths), tokens.device),
            key_varlen=varlen.Varlen(tuple(key_lengths), tokens.device),
        )

    def apply_attn(self, split: QueriesAndContext) -> Tensor:
        """Cross-attention blocks over the queries [B, Q, D]; the context stays fixed.

        The blocks run on the real queries and context tokens only, packed back to back
        (models/nn/varlen.py); padded query rows come back as zeros.
        """
        queries = split.queries
        if queries.shape[1] == 0:
            return queries
        query_lengths = split.query_varlen or varlen.Varlen.from_mask(split.query_mask)
        key_mask = split.key_mask
        key_lengths = split.key_varlen or varlen.Varlen.from_mask(key_mask)
        flat = varlen.flatten(queries, split.query_mask, query_lengths)
        context = varlen.flatten(split.context, key_mask, key_lengths)
        for block in self.blocks:
            flat = block(flat, context, q_varlen=query_lengths, kv_varlen=key_lengths)
        return varlen.unflatten(flat, split.query_mask, query_lengths)

    def combine_queries_and_context(self, queries: Tensor, split: QueriesAndContext) -> Tensor:
        """Decoded queries and the context back at their original positions: [B, N, D]."""
        batch, total = split.indices.shape
        combined = queries.new_zeros(batch, total, queries.shape[-1])
        num_context = split.context.shape[1]
        combined[:, total - num_context :] = split.context * split.context_mask[:, :, None]
        combined[:, : queries.shape[1]] += queries * split.query_mask[:, :, None]
        index = split.indices[:, :, None].expand_as(combined)
        return combined.scatter(1, index, combined)

    # -- step 7 --------------------------------------------------------------------------------

    def project_output(self, tokens: Tensor, layout: sequence.TokenLayout) -> dict[str, Tensor]:
        """LayerNorm then the shared Linear, per token; split per modality."""
        return sequence.split(self.to_output(self.norm(tokens)), layout)

    def forward(
        self,
        x: TokensAndMasks,
        timestamps: Tensor,
        patch_size: int,
        input_res_m: float = 10.0,
    ) -> TokensAndMasks:
        """Predicts the DECODER tokens of every supported modality in `x`.

        Args:
            x: encoder output: tokens [B, h, w, T, S, D_enc] and masks [B, h, w, T, S].
            timestamps: [B, T, 3] (day, month 0..11, year).
            patch_size: pixels per patch side (spacing of the spatial encoding).
            input_res_m: metres per input pixel.

        Returns:
            Predictions [B, h, w, T, S, output_width] with the masks of `x`; only DECODER
            positions carry predictions.
        """
        names = [name for name in x.modality_names if name in self.config.supported_modalities]
        if not names:
            raise ValueError(
                f"the encoder output has none of the supported modalities "
                f"{list(self.config.supported_modalities)}"
            )
        masks = {name: x.masks[name] for name in names}
        tokens, mask, layout = sequence.collapse({name: x.tokens[name] for name in names}, masks)
        tokens = self.embed_visible_tokens(tokens, mask == MaskValue.ONLINE_ENCODER)
        tokens = self.add_mask_tokens(tokens, mask)
        tokens = self.apply_composite_encodings(tokens, layout, timestamps, patch_size, input_res_m)
        split = self.split_queries_and_context(tokens, mask)
        decoded = self.apply_attn(split)
        tokens = self.combine_queries_and_context(decoded, split)
        return TokensAndMasks(tokens=self.project_output(tokens, layout), masks=masks)
