"""Blocked bf16 attention: equal to softmax attention, used only for bf16 inference on CPU."""

import pytest
import torch
import torch.nn.functional as F

from models.nn import blocked_attention, precision, varlen
from models.nn.attention import SelfAttention
from models.nn.varlen import Varlen


def _inputs(batch, heads, n_q, n_k, head_dim, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(batch, heads, n, head_dim, generator=generator).bfloat16()
        for n in (n_q, n_k, n_k)
    )
    return q, k, v


@pytest.mark.parametrize(
    ("n_q", "n_k", "block"), [(37, 37, 512), (37, 37, 8), (5, 23, 2), (16, 9, 1)]
)
def test_blocked_attention_matches_fp32_softmax_attention_to_bf16_rounding(n_q, n_k, block):
    q, k, v = _inputs(2, 3, n_q, n_k, 16)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    out = blocked_attention.blocked_attention(q, k, v, query_block=block)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 3, n_q, 16)
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)
    cosine = F.cosine_similarity(out.float().flatten(), expected.flatten(), dim=0)
    assert cosine > 0.9999


def test_block_size_does_not_change_the_result():
    q, k, v = _inputs(1, 2, 50, 50, 8)
    one = blocked_attention.blocked_attention(q, k, v, query_block=7)
    whole = blocked_attention.blocked_attention(q, k, v, query_block=64)
    torch.testing.assert_close(one, whole, atol=1e-2, rtol=0)


@pytest.mark.parametrize(
    ("queries", "most", "rows"),
    [(1152, 1152, 1152), (1153, 1152, 577), (2250, 1152, 1125), (5, 2, 2), (1, 512, 1), (0, 8, 1)],
)
def test_queries_are_split_into_the_fewest_equal_blocks(queries, most, rows):
    assert blocked_attention.block_rows(queries, most) == rows


def test_output_is_laid_out_for_merging_heads_without_a_copy():
    q, k, v = _inputs(2, 4, 6, 6, 8)
    out = blocked_attention.blocked_attention(q, k, v)
    merged = out.transpose(1, 2)  # [B, L, heads, Dh], what the projection reads
    assert merged.is_contiguous()


def test_strided_views_of_a_fused_projection_are_accepted():
    # q, k, v as SelfAttention makes them: head-split views of one [B, N, 3, heads, Dh] tensor.
    fused = torch.randn(2, 11, 3, 4, 8).bfloat16()
    q, k, v = fused.permute(2, 0, 3, 1, 4).unbind(0)  # [B, heads, N, Dh], non-contiguous
    assert not q.is_contiguous()
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    out = blocked_attention.blocked_attention(q, k, v, query_block=4)
    torch.testing.assert_close(out.float(), expected, atol=2e-2, rtol=2e-2)


def test_applies_only_to_bf16_on_cpu_without_gradients():
    if not precision.cpu_has_bf16_kernels():
        pytest.skip("this CPU has no oneDNN bf16 kernels: SDPA is used throughout")
    q, k, v = _inputs(1, 1, 4, 4, 8)
    assert blocked_attention.applies(q, k, v)
    assert not blocked_attention.applies(q.float(), k.float(), v.float())
    assert not blocked_attention.applies(q, k.float(), v)
    trainable = q.clone().requires_grad_()
    assert not blocked_attention.applies(trainable, k, v)
    with torch.no_grad():
        assert blocked_attention.applies(trainable, k, v)


def test_bad_shapes_are_refused_with_the_shapes_named():
    q, k, v = _inputs(1, 2, 4, 4, 8)
    with pytest.raises(ValueError, match=r"q \(1, 2, 4, 8\)"):
        blocked_attention.blocked_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="zero keys"):
        blocked_attention.blocked_attention(q, k[:, :, :0], v[:, :, :0])
    with pytest.raises(ValueError, match="query_block"):
        blocked_attention.blocked_attention(q, k, v, query_block=0)


def test_packed_attention_takes_the_blocked_path_for_bf16_inference_only():
    q, k, v = (t.transpose(1, 2).reshape(-1, 3, 8) for t in _inputs(2, 3, 5, 5, 8))
    lengths = Varlen.uniform_batch(2, 5, torch.device("cpu"))
    with torch.no_grad():
        packed = varlen.varlen_attention(q, k, v, lengths, lengths)
    batched = [t.unflatten(0, (2, 5)).transpose(1, 2) for t in (q, k, v)]
    expected = (
        blocked_attention.blocked_attention(*batched)
        if precision.cpu_has_bf16_kernels()
        else F.scaled_dot_product_attention(*batched)
    )
    assert torch.equal(packed, expected.transpose(1, 2).reshape(q.shape))
    # With gradients needed, SDPA runs and gradients reach the inputs.
    trainable = q.clone().requires_grad_()
    varlen.varlen_attention(trainable, k, v, lengths, lengths).float().sum().backward()
    assert trainable.grad is not None and trainable.grad.abs().sum() > 0


def test_self_attention_in_bf16_autocast_inference_matches_fp32():
    torch.manual_seed(0)
    layer = SelfAttention(width=32, num_heads=4).eval()
    x = torch.randn(2, 40, 32)
    with torch.no_grad():
        expected = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
    assert out.dtype == torch.bfloat16
    cosine = F.cosine_similarity(out.float().flatten(), expected.flatten(), dim=0)
    assert cosine > 0.9995


def test_a_cpu_without_bf16_kernels_keeps_sdpa(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_bf16_kernels", lambda: False)
    q, k, v = _inputs(1, 1, 4, 4, 8)
    with torch.no_grad():
        assert not blocked_attention.applies(q, k, v)


def test_attention_takes_the_blocked_form_only_where_it_applies():
    q, k, v = _inputs(1, 2, 6, 6, 8)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    assert torch.equal(blocked_attention.attention(q.float(), k.float(), v.float()), expected)
    if precision.cpu_has_bf16_kernels():
        blocked = blocked_attention.blocked_attention(q, k, v)
        assert torch.equal(blocked_attention.attention(q, k, v), blocked)
