"""Variable-length samples packed back to back, and attention within each sample.

A batch whose samples keep different numbers of tokens is padded to the longest for
`[B, L, D]` tensors. Packed instead, the tokens are `[N, D]` with N the sum of the lengths and
sample b at rows `offsets[b] : offsets[b + 1]`, and every per-token op (LayerNorm, Linear, MLP,
residuals) runs on real tokens only. Padding is not a corner case in OlmoEarth training: with
`modality_cross_random` masks at microbatch 32, the longest sample keeps 1.3 to 1.8x the mean
number of encoder tokens (tools/bench measured it), so padded blocks spend a quarter to a half
of their FLOPs on padding.

Attention is the only op that mixes tokens, so only it needs the sample boundaries
(`varlen_attention`), in the fastest form available:
- every sample the same length: one batched SDPA call, no mask (SDPA's fastest kernels);
  for bf16 inference on CPU, bf16 GEMMs per head and block of queries instead (1.6x SDPA
  there, models/nn/blocked_attention.py), here and in the per-sample loop below;
- CUDA with fp16/bf16 inputs: the FlashAttention varlen kernel over the packed tokens
  (`torch.nn.attention.varlen.varlen_attn`); not measured here (no GPU where this was written);
- otherwise: one unmasked SDPA call per sample, on views of the packed tensor. No padded
  query is computed and no key is masked; the loop costs ~30 us of Python per sample and block,
  against milliseconds of attention per sample at realistic lengths.
Shapes: N tokens, D width (legend: models/modalities/samples.py).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import torch
from torch import Tensor

from models.nn import blocked_attention

try:  # torch >= 2.9; CUDA only at run time
    from torch.nn.attention.varlen import varlen_attn as _flash_varlen_attn
except ImportError:  # pragma: no cover - older torch
    _flash_varlen_attn = None

FLASH_DTYPES = (torch.float16, torch.bfloat16)
FLASH_MAX_HEAD_DIM = 256
FLASH_MIN_CAPABILITY = 8
"""FlashAttention 2 runs on Ampere (sm80) and newer GPUs."""


@dataclasses.dataclass(frozen=True)
class Varlen:
    """Sample lengths of a packed batch (host integers, so no device sync to use them).

    Attributes:
        lengths: tokens of each sample, in batch order; zeros allowed.
        device: where the tokens live (for `offsets` and `sample_ids`).
    """

    lengths: tuple[int, ...]
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_mask(cls, mask: Tensor) -> Varlen:
        """Lengths of the True entries of each row of a [B, L] bool mask (one host sync)."""
        return cls(tuple(int(n) for n in mask.sum(dim=1).tolist()), mask.device)

    @classmethod
    def uniform_batch(cls, batch: int, length: int, device: torch.device) -> Varlen:
        return cls((length,) * batch, device)

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    @property
    def num_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def max_len(self) -> int:
        return max(self.lengths, default=0)

    @property
    def is_uniform(self) -> bool:
        """Every sample has the same length: the packed tokens are a reshaped [B, L, D]."""
        return len(set(self.lengths)) <= 1

    @functools.cached_property
    def offsets(self) -> Tensor:
        """[B + 1] int32 cumulative lengths (FlashAttention's cu_seqlens)."""
        values = [0, *itertools.accumulate(self.lengths)]
        return torch.tensor(values, dtype=torch.int32, device=self.device)

    @functools.cached_property
    def sample_ids(self) -> Tensor:
        """[N] long: the sample each packed token belongs to."""
        lengths = torch.tensor(self.lengths, device=self.device)
        samples = torch.arange(self.batch_size, device=self.device)
        # output_size: the total is known on the host, so CUDA needs no sync to size it.
        return torch.repeat_interleave(samples, lengths, output_size=self.num_tokens)


def flatten(tokens: Tensor, mask: Tensor, varlen: Varlen) -> Tensor:
    """[B, L, D] -> [N, D]: the rows where mask [B, L] is True, sample by sample, in order.

    A view (no copy) when every row is kept.
    """
    batch, length = mask.shape
    if varlen.is_uniform and varlen.max_len == length:
        return tokens.reshape(batch * length, *tokens.shape[2:])
    return tokens[mask]


def unflatten(packed: Tensor, mask: Tensor, varlen: Varlen) -> Tensor:
    """Inverse of `flatten`: [N, D] -> [B, L, D] with zeros where mask is False."""
    batch, length = mask.shape
    if varlen.is_uniform and varlen.max_len == length:
        return packed.reshape(batch, length, *packed.shape[1:])
    out = packed.new_zeros(batch, length, *packed.shape[1:])
    return out.index_put((mask,), packed)


@functools.cache
def _flash_capable(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] >= FLASH_MIN_CAPABILITY


def _use_flash_varlen(q: Tensor) -> bool:
    return (
        _flash_varlen_attn is not None
        and q.is_cuda
        and q.dtype in FLASH_DTYPES
        and q.shape[-1] % 8 == 0
        and q.shape[-1] <= FLASH_MAX_HEAD_DIM
        and _flash_capable(q.device.index if q.device.index is not None else 0)
    )


def _batched(packed: Tensor, varlen: Varlen) -> Tensor:
    """[N, heads, Dh] of uniform samples -> [B, heads, L, Dh] (a view)."""
    return packed.unflatten(0, (varlen.batch_size, varlen.max_len)).transpose(1, 2)


def varlen_attention(
    q: Tensor, k: Tensor, v: Tensor, q_varlen: Varlen, kv_varlen: Varlen
) -> Tensor:
    """Softmax attention of each sample's queries over its own keys (see the module docstring).

    Args:
        q: [Nq, heads, Dh] packed queries.
        k, v: [Nk, heads, Dh] packed keys and values.
        q_varlen, kv_varlen: sample lengths of q and of k / v (the same batch).

    Returns:
        [Nq, heads, Dh]. A sample without queries contributes no rows; a sample with queries
        needs at least one key.
    """
    if q_varlen.batch_size != kv_varlen.batch_size:
        raise ValueError(
            f"queries have {q_varlen.batch_size} samples but keys have {kv_varlen.batch_size}"
        )
    if q_varlen.is_uniform and kv_varlen.is_uniform:
        out = blocked_attention.attention(
            _batched(q, q_varlen), _batched(k, kv_varlen), _batched(v, kv_varlen)
        )
        return out.transpose(1, 2).reshape(q.shape)
    if _use_flash_varlen(q):
        return _flash_varlen_attn(
            q,
            k,
            v,
            q_varlen.offsets,
            kv_varlen.offsets,
            q_varlen.max_len,
            kv_varlen.max_len,
        )
    outputs = []
    for q_b, k_b, v_b, n_q, n_kv in zip(
        q.split(q_varlen.lengths),
        k.split(kv_varlen.lengths),
        v.split(kv_varlen.lengths),
        q_varlen.lengths,
        kv_varlen.lengths,
        strict=True,
    ):
        if n_q == 0:
            continue
        if n_kv == 0:
            raise ValueError("a sample with queries has no key to attend to")
        out = blocked_attention.attention(
            q_b.transpose(0, 1)[None], k_b.transpose(0, 1)[None], v_b.transpose(0, 1)[None]
        )
        outputs.append(out[0].transpose(0, 1))
    if not outputs:
        return q.new_zeros(q.shape)
    return torch.cat(outputs)
