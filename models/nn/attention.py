"""Transformer layers: self-attention, cross-attention, MLP, DropPath and pre-norm blocks.

Two token layouts (legend: models/modalities/samples.py):
- padded `[B, N, D]`, with an optional key padding mask `[B, N]` (True = this key takes part),
  passed only when some sample is actually padded, so SDPA can use its fastest kernels;
- packed `[N, D]` with a `Varlen` (models/nn/varlen.py): the samples' tokens back to back, no
  padding; what the encoder and the predictor run on, so per-token work skips padding.
"""

from __future__ import annotations

import einops
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.nn import blocked_attention, onednn_linear
from models.nn.varlen import Varlen, varlen_attention


def _sdpa(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None) -> Tensor:
    """q [B, heads, Nq, Dh], k/v [B, heads, Nk, Dh], mask [B, Nk] (True = attend)."""
    if key_padding_mask is None:  # bf16 inference on CPU takes the blocked form: 1.6x
        return blocked_attention.attention(q, k, v)
    attn_mask = key_padding_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection Linear(D, 3D).

    The output rows of `qkv` are [q; k; v], each split into heads as (heads, head_dim), so a
    reference checkpoint's separate q, k, v weights load by concatenation.
    """

    def __init__(self, width: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.qkv.fused_chunks = 3
        self.proj = nn.Linear(width, width)

    def forward(
        self, x: Tensor, key_padding_mask: Tensor | None = None, varlen: Varlen | None = None
    ) -> Tensor:
        """x [B, N, D]; key_padding_mask [B, N] or None -> [B, N, D].

        With `varlen`, x is packed [N, D] and each sample attends within itself -> [N, D].
        """
        # onednn_linear.linear is the layer's own forward except for bf16 inference on CPU,
        # where it takes the bias inside the GEMM (models/nn/onednn_linear.py).
        qkv = onednn_linear.linear(x, self.qkv)
        if varlen is not None:
            q, k, v = qkv.unflatten(-1, (3, self.num_heads, -1)).unbind(1)
            return onednn_linear.linear(
                varlen_attention(q, k, v, varlen, varlen).flatten(1), self.proj
            )
        q, k, v = einops.rearrange(
            qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads
        ).unbind(0)
        out = _sdpa(q, k, v, key_padding_mask)
        return onednn_linear.linear(einops.rearrange(out, "b h n d -> b n (h d)"), self.proj)


class CrossAttention(nn.Module):
    """Multi-head attention of queries over a separate context: q Linear(D, D), kv Linear(D, 2D)."""

    def __init__(self, width: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width {width} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(width, width, bias=qkv_bias)
        self.kv = nn.Linear(width, 2 * width, bias=qkv_bias)
        self.kv.fused_chunks = 2
        self.proj = nn.Linear(width, width)

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        key_padding_mask: Tensor | None = None,
        q_varlen: Varlen | None = None,
        kv_varlen: Varlen | None = None,
    ) -> Tensor:
        """x [B, Nq, D] attends to context [B, Nk, D]; key_padding_mask [B, Nk] -> [B, Nq, D].

        With `q_varlen` and `kv_varlen`, x is packed [Nq, D] and context packed [Nk, D]; each
        sample's queries attend to its own context -> [Nq, D].
        """
        if q_varlen is not None or kv_varlen is not None:
            if q_varlen is None or kv_varlen is None:
                raise ValueError("packed cross-attention needs both q_varlen and kv_varlen")
            q = self.q(x).unflatten(-1, (self.num_heads, -1))
            k, v = self.kv(context).unflatten(-1, (2, self.num_heads, -1)).unbind(1)
            return self.proj(varlen_attention(q, k, v, q_varlen, kv_varlen).flatten(1))
        q = einops.rearrange(self.q(x), "b n (h d) -> b h n d", h=self.num_heads)
        k, v = einops.rearrange(
            self.kv(context), "b n (two h d) -> two b h n d", two=2, h=self.num_heads
        ).unbind(0)
        out = _sdpa(q, k, v, key_padding_mask)
        return self.proj(einops.rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """Linear(D, ratio D) -> GELU (exact erf) -> Linear(ratio D, D)."""

    def __init__(self, width: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.act, nn.GELU) and self.act.approximate == "none":
            # Eager fc1 -> GELU -> fc2, or one fused kernel per layer for bf16 inference on
            # CPU (models/nn/onednn_linear.py).
            hidden = onednn_linear.linear(x, self.fc1, activation="gelu")
            return onednn_linear.linear(hidden, self.fc2)
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: in training, zeroes a sample's residual branch with probability p.

    Kept branches are scaled by 1 / (1 - p) so the expectation is unchanged; identity in eval
    and when p = 0. Packed tokens [N, D] pass their `Varlen`, so that the draw is per sample
    (the same random numbers as the padded layout of the same batch).
    """

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor, varlen: Varlen | None = None) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        if varlen is None:
            shape = (x.shape[0],) + (1,) * (x.ndim - 1)
            keep = torch.floor(keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device))
        else:
            per_sample = torch.rand(varlen.batch_size, dtype=x.dtype, device=x.device)
            keep = torch.floor(keep_prob + per_sample)[varlen.sample_ids]
            keep = keep.reshape(-1, *([1] * (x.ndim - 1)))
        return x.div(keep_prob) * keep


class Block(nn.Module):
    """Pre-norm ViT block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, mlp_ratio)

    def forward(
        self, x: Tensor, key_padding_mask: Tensor | None = None, varlen: Varlen | None = None
    ) -> Tensor:
        """Padded x [B, N, D] (optional key_padding_mask), or packed x [N, D] with `varlen`."""
        x = x + self.drop_path(self.attn(self.norm1(x), key_padding_mask, varlen), varlen)
        return x + self.drop_path(self.mlp(self.norm2(x)), varlen)


class CrossBlock(nn.Module):
    """Pre-norm cross-attention block: queries attend only to the context, never to each other.

    x + DropPath(CrossAttn(LN(x), context)), then x + DropPath(MLP(LN(x))). The context enters
    the key/value projection without a norm (as the reference) and is not updated.
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = CrossAttention(width, num_heads)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, mlp_ratio)

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        key_padding_mask: Tensor | None = None,
        q_varlen: Varlen | None = None,
        kv_varlen: Varlen | None = None,
    ) -> Tensor:
        """Padded x [B, Nq, D] and context [B, Nk, D], or both packed with their `Varlen`s."""
        attended = self.attn(self.norm1(x), context, key_padding_mask, q_varlen, kv_varlen)
        x = x + self.drop_path(attended, q_varlen)
        return x + self.drop_path(self.mlp(self.norm2(x)), q_varlen)
