"""The OlmoEarth v1 encoder: a FlexiViT over the visible tokens of all encodable modalities.

One forward pass, each step a method a subclass can override (shapes: the legend in
models/modalities/samples.py):

1. `embed_patches`: per encodable modality, tokens [B, h, w, T, S, D] and token masks.
2. `apply_composite_encodings`: band-set, time-slot, month and ground-position encodings.
3. `collapse_and_combine_hwtc`: one sequence [B, N, D] and masks [B, N], modalities in
   canonical registry order, each flattened row-major over (h, w, T, S).
4. `remove_masked_tokens`: keep the ONLINE_ENCODER tokens, left-packed (stable sort), padded
   to the longest sample. `fast_pass=True` (inference) keeps everything instead.
5. `apply_attn`: the blocks (on the kept tokens only, packed back to back: no FLOP on padding,
   models/nn/varlen.py), the final LayerNorm (on real tokens only), `add_removed_tokens`
   (removed positions come back as zeros), `split_and_expand_per_modality`.
6. `pool_and_project`: the mean of the ONLINE_ENCODER tokens, then a Linear (the reference's
   ProjectAndAggregate with aggregate_then_project): the instance vector for InfoNCE.

Decode-only modalities (the six maps of the v1 recipe) keep patch embeddings, which seed the
frozen target and serve `embed_patches_only`, but they never enter the sequence: the encoder
returns zero tokens for them with their masks, so the predictor knows where to decode. Their
online patch embeddings and band-set embeddings are frozen (requires_grad=False) because nothing
trains them; the reference runs them and discards every token, so their gradient there is
exactly zero.

Padding is masked out of attention in train *and* eval mode, so a sample's embedding does not
depend on what else is in its batch (the reference skips the mask in eval mode and a sample's
tokens then move by up to 1.5 when batched with a shorter sample).
"""

from __future__ import annotations

import dataclasses

from torch import Tensor, nn

from models.config.configurable import Configurable
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue, TokensAndMasks
from models.nn import sequence, varlen
from models.nn.attention import Block
from models.nn.encodings import CompositeEncodings
from models.nn.init import xavier_init_linears_
from models.nn.patch_embed import PATCH_EMBED_KINDS, MultiModalPatchEmbed
from models.nn.validation import check_transformer_shape, modality_names


@dataclasses.dataclass(kw_only=True)
class EncoderConfig(Configurable["Encoder"]):
    """Configuration of `Encoder`.

    Attributes:
        width: token width D (a multiple of 16 and of num_heads).
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width / D.
        drop_path: stochastic-depth rate of every block, in [0, 1) (0.1 in v1).
        supported_modalities: modalities with patch embeddings (the targets need all of them).
        decode_only_modalities: supported modalities that are never encoded; None takes the
            registry's `decode_only` flags (the six maps).
        max_patch_size: patch side covered by the projection weights (8 in v1).
        min_patch_size: smallest patch size accepted by forward (1 in v1).
        patch_embed: "conv" (v1 checkpoints) or "linear" (same map as one GEMM).
        tokenization: band grouping into tokens; must match the data and masking.
    """

    width: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    supported_modalities: tuple[str, ...] = modalities.TRAINING_MODALITIES
    decode_only_modalities: tuple[str, ...] | None = None
    max_patch_size: int = 8
    min_patch_size: int = 1
    patch_embed: str = "conv"
    tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_transformer_shape(
            owner, self.width, self.depth, self.num_heads, self.mlp_ratio, self.drop_path
        )
        self.supported_modalities = modality_names(
            self.supported_modalities, f"{owner}.supported_modalities"
        )
        if not self.supported_modalities:
            raise ValueError(f"{owner}.supported_modalities is empty; name at least one modality")
        if self.decode_only_modalities is None:
            self.decode_only_modalities = tuple(
                name for name in self.supported_modalities if modalities.get(name).decode_only
            )
        self.decode_only_modalities = modality_names(
            self.decode_only_modalities, f"{owner}.decode_only_modalities"
        )
        unsupported = set(self.decode_only_modalities) - set(self.supported_modalities)
        if unsupported:
            raise ValueError(
                f"{owner}.decode_only_modalities {sorted(unsupported)} are not in "
                f"supported_modalities {list(self.supported_modalities)}"
            )
        if not self.encodable_modalities:
            raise ValueError(
                f"{owner}: every supported modality is decode-only; the encoder needs at least "
                "one modality to encode"
            )
        if self.max_patch_size < 1:
            raise ValueError(f"{owner}.max_patch_size must be >= 1, got {self.max_patch_size}")
        if not 1 <= self.min_patch_size <= self.max_patch_size:
            raise ValueError(
                f"{owner}.min_patch_size must be in [1, max_patch_size={self.max_patch_size}], "
                f"got {self.min_patch_size}"
            )
        if self.patch_embed not in PATCH_EMBED_KINDS:
            raise ValueError(
                f"{owner}.patch_embed must be one of {PATCH_EMBED_KINDS}, got {self.patch_embed!r}"
            )
        if not isinstance(self.tokenization, modalities.Tokenization):
            raise ValueError(
                f"{owner}.tokenization must be a modalities.Tokenization, "
                f"got {type(self.tokenization).__name__}"
            )

    @property
    def specs(self) -> tuple[modalities.ModalitySpec, ...]:
        """Supported modalities with this config's band sets, canonical order."""
        return self.tokenization.specs(self.supported_modalities)

    @property
    def encodable_modalities(self) -> tuple[str, ...]:
        """Supported modalities that enter the token sequence, canonical order."""
        decode_only = set(self.decode_only_modalities or ())
        return tuple(
            name
            for name in modalities.canonical_order(self.supported_modalities)
            if name not in decode_only
        )

    def build(self) -> Encoder:
        return Encoder(self)


@dataclasses.dataclass
class EncoderOutput:
    """tokens_and_masks: every supported modality present in the input (decode-only ones are
    zeros); removed positions are zeros. pooled: [B, D] instance vector."""

    tokens_and_masks: TokensAndMasks
    pooled: Tensor


class Encoder(nn.Module):
    """See the module docstring; built from an `EncoderConfig`."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        specs = config.specs
        width = config.width
        self.patch_embed = MultiModalPatchEmbed(
            specs, width, config.max_patch_size, config.patch_embed
        )
        self.encodings = CompositeEncodings(width, specs, config.max_patch_size)
        self.blocks = nn.ModuleList(
            Block(width, config.num_heads, config.mlp_ratio, config.drop_path)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(width)
        self.pooled_projection = nn.Linear(width, width)
        xavier_init_linears_(self)
        # Decode-only modalities keep the reference's parameters (so checkpoints map one to one
        # and the target can be copied from here) but never run in forward: freeze them.
        for name in config.decode_only_modalities:
            self.patch_embed.modalities[name].requires_grad_(False)
            self.encodings.channel_embeddings[name].requires_grad_(False)

    # -- step 1: patch embedding ---------------------------------------------------------------

    def check_patch_size(self, patch_size: int) -> None:
        low, high = self.config.min_patch_size, self.config.max_patch_size
        if not low <= patch_size <= high:
            raise ValueError(f"patch_size must be in [{low}, {high}], got {patch_size}")

    def encodable_names(self, x: MaskedSample) -> tuple[str, ...]:
        """Encodable modalities present in `x`, canonical order."""
        return tuple(name for name in self.config.encodable_modalities if name in x.data)

    def embed_patches(self, x: MaskedSample, patch_size: int) -> TokensAndMasks:
        """Patch embeddings and token masks of the encodable modalities present in `x`."""
        return self.patch_embed(x, patch_size, self.encodable_names(x))

    def embed_patches_only(self, x: MaskedSample, patch_size: int) -> TokensAndMasks:
        """Raw patch embeddings (no encodings, no attention) of every supported modality in `x`.

        This is the frozen random-projection target of Latent MIM Lite.
        """
        self.check_patch_size(patch_size)
        return self.patch_embed(x, patch_size)

    # -- step 2: encodings ---------------------------------------------------------------------

    def apply_composite_encodings(
        self, embedded: TokensAndMasks, timestamps: Tensor, patch_size: int, input_res_m: float
    ) -> TokensAndMasks:
        tokens = self.encodings(embedded.tokens, timestamps, patch_size, input_res_m)
        return TokensAndMasks(tokens=tokens, masks=embedded.masks)

    # -- steps 3-5: sequence and attention -----------------------------------------------------

    def collapse_and_combine_hwtc(
        self, tokens: TokensAndMasks
    ) -> tuple[Tensor, Tensor, sequence.TokenLayout]:
        """Per-modality tokens -> [B, N, D], masks [B, N] and the layout to undo it.

        Modalities follow the canonical registry order; inside one, tokens run row-major over
        (h, w, T, S), i.e. band set fastest.
        """
        return sequence.collapse(tokens.tokens, tokens.masks)

    def remove_masked_tokens(
        self, tokens: Tensor, mask: Tensor, fast_pass: bool = False
    ) -> sequence.PackedTokens:
        """Keeps the ONLINE_ENCODER tokens, left-packed in order and padded to the longest row.

        With `fast_pass` nothing is removed (inference on fully visible inputs).
        """
        if fast_pass:
            return sequence.unpacked(tokens)
        return sequence.pack(tokens, mask == MaskValue.ONLINE_ENCODER)

    def run_blocks(self, packed: sequence.PackedTokens) -> Tensor:
        """The transformer blocks over packed tokens [B, L, D] -> [B, L, D], zeros at padding.

        The blocks see only the kept tokens, back to back ([N, D], models/nn/varlen.py): no
        FLOP is spent on padding and attention stays within each sample.
        """
        x = packed.tokens
        if x.shape[1] == 0:  # no sample has a visible token
            return x
        lengths = packed.varlen or varlen.Varlen.from_mask(packed.kept)
        flat = varlen.flatten(x, packed.kept, lengths)
        for block in self.blocks:
            flat = block(flat, varlen=lengths)
        return varlen.unflatten(flat, packed.kept, lengths)

    def add_removed_tokens(self, x: Tensor, packed: sequence.PackedTokens) -> Tensor:
        """[B, L, D] -> [B, N, D]: kept tokens back at their positions, zeros elsewhere."""
        return sequence.unpack(x, packed)

    def split_and_expand_per_modality(
        self, x: Tensor, layout: sequence.TokenLayout
    ) -> dict[str, Tensor]:
        """[B, N, D] -> {modality: [B, h, w, T, S, D] or [B, S, D]}."""
        return sequence.split(x, layout)

    def apply_attn(
        self, packed: sequence.PackedTokens, layout: sequence.TokenLayout
    ) -> dict[str, Tensor]:
        """Blocks, final norm (real tokens only), removed tokens back as zeros, split."""
        x = self.run_blocks(packed)
        x = self.norm(x)
        x = self.add_removed_tokens(x, packed)
        return self.split_and_expand_per_modality(x, layout)

    # -- step 6: output ------------------------------------------------------------------------

    def pool_and_project(self, encoded: TokensAndMasks) -> Tensor:
        """Mean of the ONLINE_ENCODER tokens [B, D], then Linear. Zeros in, bias out, for a
        sample with no visible token (the reference raises there)."""
        tokens, mask = encoded.flatten()
        visible = (mask == MaskValue.ONLINE_ENCODER).to(tokens.dtype)
        total = (tokens * visible[:, :, None]).sum(dim=1)
        count = visible.sum(dim=1, keepdim=True).clamp_min(1.0)
        return self.pooled_projection(total / count)

    def forward(
        self,
        x: MaskedSample,
        patch_size: int,
        input_res_m: float = 10.0,
        fast_pass: bool = False,
    ) -> EncoderOutput:
        """Encodes the visible tokens of `x`.

        Args:
            x: data [B, H, W, T, C] and per-band-set masks [B, H, W, T, S] per modality.
            patch_size: pixels per patch side, in [min_patch_size, max_patch_size].
            input_res_m: metres per input pixel (scales the spatial encoding).
            fast_pass: inference shortcut: nothing is removed and no mask is built, so every
                token (MISSING ones too) takes part in attention. Use it only when every token
                is ONLINE_ENCODER; then it equals the normal pass.
        """
        self.check_patch_size(patch_size)
        if not self.encodable_names(x):
            raise ValueError(
                f"the sample has none of the encodable modalities "
                f"{list(self.config.encodable_modalities)}; it has {list(x.modality_names)}"
            )
        embedded = self.embed_patches(x, patch_size)
        embedded = self.apply_composite_encodings(embedded, x.timestamps, patch_size, input_res_m)
        tokens, mask, layout = self.collapse_and_combine_hwtc(embedded)
        packed = self.remove_masked_tokens(tokens, mask, fast_pass)
        encoded = TokensAndMasks(tokens=self.apply_attn(packed, layout), masks=embedded.masks)
        return EncoderOutput(
            tokens_and_masks=self.with_decode_only_modalities(encoded, x, patch_size),
            pooled=self.pool_and_project(encoded),
        )

    def with_decode_only_modalities(
        self, encoded: TokensAndMasks, x: MaskedSample, patch_size: int
    ) -> TokensAndMasks:
        """Adds zero tokens and token masks for the decode-only modalities present in `x`."""
        names = [name for name in x.modality_names if name in self.config.decode_only_modalities]
        masks = self.patch_embed.token_masks(x, patch_size, names)
        reference = next(iter(encoded.tokens.values()))
        tokens = {
            name: reference.new_zeros(*masks[name].shape, reference.shape[-1]) for name in names
        }
        order = modalities.canonical_order([*encoded.tokens, *names])
        all_tokens = {**encoded.tokens, **tokens}
        all_masks = {**encoded.masks, **masks}
        return TokensAndMasks(
            tokens={name: all_tokens[name] for name in order},
            masks={name: all_masks[name] for name in order},
        )
