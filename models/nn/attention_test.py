"""Attention layers: head layout of the fused projections, masking, cross-attention, init."""

import math

import pytest
import torch

from models.nn.attention import Block, CrossAttention, CrossBlock, DropPath, SelfAttention
from models.nn.init import xavier_init_linears_


def _manual_attention(q, k, v, heads, key_mask=None):
    """Softmax attention over [B, N, D] tensors split into heads as (heads, head_dim)."""
    b, nq, d = q.shape
    split = lambda t: t.reshape(b, t.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    return (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, nq, d)


def test_fused_qkv_is_q_then_k_then_v_each_split_into_heads():
    torch.manual_seed(0)
    attn = SelfAttention(width=16, num_heads=4)
    x = torch.randn(2, 5, 16)
    q, k, v = attn.qkv(x).split(16, dim=-1)
    expected = attn.proj(_manual_attention(q, k, v, heads=4))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_padded_keys_do_not_change_real_tokens():
    torch.manual_seed(0)
    block = Block(width=16, num_heads=2)
    x = torch.randn(2, 6, 16)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = block(x, mask)
    x_changed = x.clone()
    x_changed[1, 4:] = torch.randn(2, 16) * 10
    out_changed = block(x_changed, mask)
    torch.testing.assert_close(out[1, :4], out_changed[1, :4])
    torch.testing.assert_close(out[0], out_changed[0])
    torch.testing.assert_close(block(x[1:, :4]), out[1:, :4], atol=1e-5, rtol=1e-5)


def test_cross_attention_fused_kv_matches_manual_attention():
    torch.manual_seed(0)
    attn = CrossAttention(width=16, num_heads=2)
    x, context = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    k, v = attn.kv(context).split(16, dim=-1)
    expected = attn.proj(_manual_attention(attn.q(x), k, v, heads=2, key_mask=mask))
    torch.testing.assert_close(attn(x, context, mask), expected, atol=1e-5, rtol=1e-5)


def test_cross_block_queries_never_see_each_other_and_context_is_not_normalised():
    torch.manual_seed(0)
    block = CrossBlock(width=16, num_heads=2)
    x, context = torch.randn(1, 3, 16), torch.randn(1, 4, 16)
    out = block(x, context)
    x_changed = x.clone()
    x_changed[0, 2] += 5.0
    torch.testing.assert_close(block(x_changed, context)[0, :2], out[0, :2])
    # A LayerNorm on the context would make a rescaled context give the same output.
    assert not torch.allclose(block(x, context * 3.0), out, atol=1e-3)


def test_xavier_init_bounds_each_fused_chunk_like_a_separate_layer_and_zeroes_biases():
    torch.manual_seed(0)
    attn = SelfAttention(width=64, num_heads=4)
    xavier_init_linears_(attn)
    bound = math.sqrt(6.0 / (64 + 64))
    for chunk in attn.qkv.weight.chunk(3, dim=0):
        assert chunk.abs().max() <= bound
        assert chunk.abs().max() > 0.9 * bound  # the square-layer bound, not sqrt(6 / 256)
    assert torch.all(attn.qkv.bias == 0) and torch.all(attn.proj.bias == 0)


def test_layers_flagged_keep_default_init_are_left_alone():
    linear = torch.nn.Linear(4, 4)
    linear.keep_default_init = True
    before = linear.weight.clone()
    xavier_init_linears_(torch.nn.Sequential(linear))
    assert torch.equal(linear.weight, before)


def test_drop_path_zeroes_or_rescales_whole_samples_in_training_only():
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.ones(64, 3, 2)
    out = drop(x)
    per_sample = out.reshape(64, -1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.all(per_sample == per_sample[:, :1])
    assert 0 < (per_sample[:, 0] == 0).sum() < 64
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)
