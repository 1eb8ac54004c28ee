"""Packed variable-length tokens: flatten/unflatten, per-sample attention and its dispatch."""

import pytest
import torch
import torch.nn.functional as F

from models.nn import varlen
from models.nn.attention import Block, CrossBlock, DropPath
from models.nn.varlen import Varlen


def _padded_attention(q, k, v, q_mask, k_mask):
    """Reference: per-sample SDPA on [B, L, heads, Dh] with padding cut off by hand."""
    outputs = []
    for b in range(q.shape[0]):
        q_b, k_b, v_b = q[b][q_mask[b]], k[b][k_mask[b]], v[b][k_mask[b]]
        out = F.scaled_dot_product_attention(
            q_b.transpose(0, 1), k_b.transpose(0, 1), v_b.transpose(0, 1)
        )
        outputs.append(out.transpose(0, 1))
    return torch.cat(outputs)


def test_varlen_counts_rows_and_offsets_follow_the_lengths():
    mask = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    lengths = Varlen.from_mask(mask)
    assert lengths.lengths == (2, 0, 3) and lengths.num_tokens == 5 and lengths.max_len == 3
    assert not lengths.is_uniform
    assert lengths.offsets.tolist() == [0, 2, 2, 5] and lengths.offsets.dtype == torch.int32
    assert lengths.sample_ids.tolist() == [0, 0, 2, 2, 2]


def test_flatten_keeps_masked_rows_in_order_and_unflatten_restores_zeros():
    tokens = torch.arange(12.0).reshape(2, 3, 2)
    mask = torch.tensor([[True, False, True], [False, True, False]])
    lengths = Varlen.from_mask(mask)
    flat = varlen.flatten(tokens, mask, lengths)
    assert flat.tolist() == [[0.0, 1.0], [4.0, 5.0], [8.0, 9.0]]
    assert torch.equal(varlen.unflatten(flat, mask, lengths), tokens * mask[:, :, None])


def test_flatten_of_a_full_batch_is_a_view():
    tokens = torch.randn(2, 3, 4)
    mask = torch.ones(2, 3, dtype=torch.bool)
    flat = varlen.flatten(tokens, mask, Varlen.from_mask(mask))
    assert flat.data_ptr() == tokens.data_ptr() and flat.shape == (6, 4)


@pytest.mark.parametrize("lengths", [(3, 3), (4, 1), (0, 2)])
def test_packed_attention_equals_attention_within_each_sample(lengths):
    torch.manual_seed(0)
    q_mask = torch.arange(4)[None, :] < torch.tensor(lengths)[:, None]
    k_mask = torch.arange(5)[None, :] < torch.tensor([5, 2])[:, None]
    q, k, v = torch.randn(2, 4, 2, 8), torch.randn(2, 5, 2, 8), torch.randn(2, 5, 2, 8)
    q_len, k_len = Varlen.from_mask(q_mask), Varlen.from_mask(k_mask)
    out = varlen.varlen_attention(q[q_mask], k[k_mask], v[k_mask], q_len, k_len)
    torch.testing.assert_close(out, _padded_attention(q, k, v, q_mask, k_mask))


def test_a_sample_with_queries_but_no_keys_is_refused():
    q_len, k_len = Varlen((1, 1)), Varlen((1, 0))
    with pytest.raises(ValueError, match="no key"):
        varlen.varlen_attention(
            torch.randn(2, 1, 4), torch.randn(1, 1, 4), torch.randn(1, 1, 4), q_len, k_len
        )


def test_flash_varlen_kernel_gets_packed_tensors_offsets_and_max_lengths(monkeypatch):
    """The CUDA path's wiring, checked on CPU with a stand-in for the FlashAttention kernel."""
    calls = []

    def stand_in(q, k, v, cu_q, cu_k, max_q, max_k):
        calls.append((cu_q.tolist(), cu_k.tolist(), max_q, max_k, cu_q.dtype))
        per_sample = []
        for b in range(len(cu_q) - 1):
            q_b, k_b, v_b = (
                t[int(c[b]) : int(c[b + 1])].transpose(0, 1)
                for t, c in ((q, cu_q), (k, cu_k), (v, cu_k))
            )
            per_sample.append(F.scaled_dot_product_attention(q_b, k_b, v_b).transpose(0, 1))
        return torch.cat(per_sample)

    monkeypatch.setattr(varlen, "_flash_varlen_attn", stand_in)
    monkeypatch.setattr(varlen, "_use_flash_varlen", lambda q: True)
    torch.manual_seed(0)
    q_len, k_len = Varlen((2, 1)), Varlen((1, 3))
    q, k, v = torch.randn(3, 2, 8), torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    out = varlen.varlen_attention(q, k, v, q_len, k_len)
    assert calls == [([0, 2, 3], [0, 1, 4], 2, 3, torch.int32)]
    monkeypatch.setattr(varlen, "_use_flash_varlen", lambda q: False)
    torch.testing.assert_close(out, varlen.varlen_attention(q, k, v, q_len, k_len))


def test_flash_kernel_is_used_only_for_half_precision_on_cuda():
    assert not varlen._use_flash_varlen(torch.randn(2, 2, 8, dtype=torch.bfloat16))
    assert not varlen._use_flash_varlen(torch.randn(2, 2, 8))


def test_packed_block_equals_padded_block_on_real_tokens():
    torch.manual_seed(0)
    block = Block(width=16, num_heads=2)
    x = torch.randn(3, 5, 16)
    mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [True] * 4 + [False]])
    lengths = Varlen.from_mask(mask)
    packed = block(varlen.flatten(x, mask, lengths), varlen=lengths)
    torch.testing.assert_close(packed, block(x, mask)[mask], atol=1e-6, rtol=1e-5)


def test_packed_cross_block_equals_padded_cross_block_on_real_queries():
    torch.manual_seed(0)
    block = CrossBlock(width=16, num_heads=2)
    x, context = torch.randn(2, 3, 16), torch.randn(2, 4, 16)
    q_mask = torch.tensor([[True, True, True], [True, False, False]])
    k_mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    q_len, k_len = Varlen.from_mask(q_mask), Varlen.from_mask(k_mask)
    packed = block(
        varlen.flatten(x, q_mask, q_len),
        varlen.flatten(context, k_mask, k_len),
        q_varlen=q_len,
        kv_varlen=k_len,
    )
    torch.testing.assert_close(packed, block(x, context, k_mask)[q_mask], atol=1e-6, rtol=1e-5)


def test_packed_drop_path_draws_one_decision_per_sample_like_the_padded_layout():
    drop = DropPath(0.5)
    x = torch.ones(8, 3, 2)
    mask = torch.arange(3)[None, :] < torch.tensor([3, 1, 2, 3, 0, 2, 1, 3])[:, None]
    lengths = Varlen.from_mask(mask)
    torch.manual_seed(1)
    padded = drop(x)
    torch.manual_seed(1)
    packed = drop(varlen.flatten(x, mask, lengths), lengths)
    assert torch.equal(packed, padded[mask])
    assert set(packed.unique().tolist()) == {0.0, 2.0}
