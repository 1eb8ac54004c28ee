"""Per-modality tokens <-> one token sequence, and left-packing of the kept tokens.

Shapes (legend: models/modalities/samples.py): per-modality tokens are spatial
[B, h, w, T, S, D] or non-spatial [B, S, D]; a sequence is [B, N, D] with masks [B, N].
Modalities are concatenated in canonical registry order (`modalities.canonical_order`), each
flattened row-major over (h, w, T, S), so a sequence's layout never depends on dict order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
from torch import Tensor

from models.modalities import modalities
from models.nn.varlen import Varlen


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Where each modality sits in a sequence: names in order, and the axes between B and D."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def counts(self) -> tuple[int, ...]:
        """Tokens per modality: h * w * T * S (spatial) or S."""
        return tuple(math.prod(shape) for shape in self.shapes)

    @property
    def num_tokens(self) -> int:
        return sum(self.counts)


def collapse(
    tokens: Mapping[str, Tensor], masks: Mapping[str, Tensor]
) -> tuple[Tensor, Tensor, TokenLayout]:
    """Concatenates modalities into tokens [B, N, D] and masks [B, N], canonical order."""
    names = modalities.canonical_order(tokens)
    batch = next(iter(tokens.values())).shape[0]
    layout = TokenLayout(names, tuple(tuple(tokens[name].shape[1:-1]) for name in names))
    flat_tokens = torch.cat(
        [tokens[name].reshape(batch, -1, tokens[name].shape[-1]) for name in names], dim=1
    )
    flat_masks = torch.cat([masks[name].reshape(batch, -1) for name in names], dim=1)
    return flat_tokens, flat_masks, layout


def concat(tokens: Mapping[str, Tensor], layout: TokenLayout) -> Tensor:
    """Per-modality tensors [B, *shape, ...] -> [B, N, ...] in `layout` order (masks too)."""
    first = tokens[layout.names[0]]
    batch, trailing = first.shape[0], first.shape[1 + len(layout.shapes[0]) :]
    return torch.cat([tokens[name].reshape(batch, -1, *trailing) for name in layout.names], dim=1)


def split(sequence: Tensor, layout: TokenLayout) -> dict[str, Tensor]:
    """Inverse of `collapse` for a [B, N, ...] tensor: views [B, *shape, ...] per modality."""
    batch, trailing = sequence.shape[0], sequence.shape[2:]
    chunks = sequence.split(list(layout.counts), dim=1)
    return {
        name: chunk.reshape(batch, *shape, *trailing)
        for name, shape, chunk in zip(layout.names, layout.shapes, chunks, strict=True)
    }


@dataclasses.dataclass
class PackedTokens:
    """The kept tokens of each sample, moved to the front of its row.

    Attributes:
        tokens: [B, L, D]; sample b's kept tokens first, in their original order, then zeros
            (padding). L is the largest number of kept tokens in the batch.
        kept: [B, L] bool; True for real tokens, False for padding.
        indices: [B, N] long or None. The stable sort permutation: packed position i of sample b
            holds original position indices[b, i] (positions >= L were dropped). None when
            nothing was removed (the inference fast pass).
        attn_mask: [B, L] bool key padding mask, or None when no sample is padded (so attention
            can take its unmasked fast path). A sample with no kept token attends to its first
            (zero) padding slot so that softmax stays finite; its outputs are dropped anyway.
        varlen: the number of kept tokens of each sample, for running the blocks on the kept
            tokens only (models/nn/varlen.py); None means "count `kept`".
    """

    tokens: Tensor
    kept: Tensor
    indices: Tensor | None
    attn_mask: Tensor | None
    varlen: Varlen | None = None


def pack(tokens: Tensor, keep: Tensor) -> PackedTokens:
    """Left-packs tokens [B, N, D] where keep [B, N] (bool) is True; pads to the longest row."""
    sorted_keep, indices = torch.sort(keep, dim=1, descending=True, stable=True)
    lengths = sorted_keep.sum(dim=1)
    varlen = Varlen(tuple(lengths.tolist()), keep.device)  # one host sync
    shortest, longest = min(varlen.lengths, default=0), varlen.max_len
    gathered = tokens.gather(1, indices[:, :, None].expand_as(tokens))
    kept = sorted_keep[:, :longest]
    packed = gathered[:, :longest] * kept[:, :, None]
    attn_mask = None
    if shortest < longest:
        attn_mask = kept
        if shortest == 0:
            empty = (lengths == 0)[:, None]
            first = torch.arange(longest, device=keep.device)[None, :] == 0
            attn_mask = kept | (empty & first)
    return PackedTokens(
        tokens=packed, kept=kept, indices=indices, attn_mask=attn_mask, varlen=varlen
    )


def unpack(tokens: Tensor, packed: PackedTokens) -> Tensor:
    """Scatters packed tokens [B, L, D] back to their original positions: [B, N, D].

    Positions that were not kept come back as zeros. Identity when `packed.indices` is None.
    """
    if packed.indices is None:
        return tokens
    batch, total = packed.indices.shape
    width = tokens.shape[-1]
    padded = torch.cat(
        [tokens * packed.kept[:, :, None], tokens.new_zeros(batch, total - tokens.shape[1], width)],
        dim=1,
    )
    index = packed.indices[:, :, None].expand(batch, total, width)
    return padded.new_zeros(batch, total, width).scatter(1, index, padded)


def unpacked(tokens: Tensor) -> PackedTokens:
    """A `PackedTokens` that keeps everything (nothing removed, no padding)."""
    batch, length = tokens.shape[:2]
    kept = torch.ones(batch, length, dtype=torch.bool, device=tokens.device)
    varlen = Varlen.uniform_batch(batch, length, tokens.device)
    return PackedTokens(tokens=tokens, kept=kept, indices=None, attn_mask=None, varlen=varlen)
