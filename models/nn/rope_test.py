"""RoPE: relative positions, identity at the origin, learnable mixed frequencies, coordinates,
the encodings it replaces, and attention/blocks with RoPE and qk-norm."""

import pytest
import torch

from models.modalities import modalities
from models.nn import rope
from models.nn.encodings import CompositeEncodings
from models.nn.varlen import Varlen

HEADS, HEAD_DIM = 2, 16


def _rope(kind: str) -> rope.Rope:
    torch.manual_seed(0)
    return rope.Rope(kind, HEADS, HEAD_DIM)


@pytest.mark.parametrize("kind", rope.ROPE_KINDS)
def test_query_key_scores_depend_only_on_the_offset_between_positions(kind):
    layer = _rope(kind)
    axes = rope.num_axes(kind)
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(1, HEADS, HEAD_DIM, generator=generator)
    k = torch.randn(1, HEADS, HEAD_DIM, generator=generator)
    p_q = torch.randn(1, axes, generator=generator) * 7
    p_k = torch.randn(1, axes, generator=generator) * 7
    shift = torch.randn(1, axes, generator=generator) * 30

    def score(a, b):
        return (layer(q, a) * layer(k, b)).sum(-1)

    torch.testing.assert_close(score(p_q, p_k), score(p_q + shift, p_k + shift), atol=1e-4, rtol=0)
    # ...and it does depend on the offset itself.
    assert (score(p_q, p_k) - score(p_q, p_k + 1.0)).abs().max() > 1e-3


@pytest.mark.parametrize("kind", rope.ROPE_KINDS)
def test_rotation_is_the_identity_at_position_zero_and_keeps_norms(kind):
    layer = _rope(kind)
    x = torch.randn(5, HEADS, HEAD_DIM)
    origin = torch.zeros(5, rope.num_axes(kind))
    assert torch.equal(layer(x, origin), x)
    moved = layer(x, torch.randn(5, rope.num_axes(kind)) * 10)
    torch.testing.assert_close(moved.norm(dim=-1), x.norm(dim=-1))


@pytest.mark.parametrize("kind", rope.ROPE_KINDS)
def test_packed_and_padded_layouts_rotate_alike(kind):
    layer = _rope(kind)
    x = torch.randn(2, HEADS, 3, HEAD_DIM)  # [B, heads, N, Dh]
    positions = torch.randn(2, 3, rope.num_axes(kind)) * 4
    padded = layer(x, positions)
    packed = layer(x.transpose(1, 2).reshape(6, HEADS, HEAD_DIM), positions.reshape(6, -1))
    torch.testing.assert_close(packed, padded.transpose(1, 2).reshape(6, HEADS, HEAD_DIM))


@pytest.mark.parametrize("kind, axes", [("rope_mixed", 2), ("rope_3d_mixed", 3)])
def test_mixed_frequencies_are_learnable_per_head_and_receive_gradients(kind, axes):
    layer = _rope(kind)
    assert [name for name, _ in layer.named_parameters()] == ["freqs"]
    assert layer.freqs.shape == (axes, HEADS, HEAD_DIM // 2)
    assert not torch.equal(layer.freqs[:, 0], layer.freqs[:, 1])  # a random direction per head
    # First and second quarters of the pairs point along orthogonal directions.
    quarter = HEAD_DIM // 4
    first, second = layer.freqs[:, :, 0], layer.freqs[:, :, quarter]
    torch.testing.assert_close((first * second).sum(0), torch.zeros(HEADS), atol=1e-6, rtol=0)
    layer(torch.randn(4, HEADS, HEAD_DIM), torch.randn(4, axes)).square().sum().backward()
    assert layer.freqs.grad is not None and layer.freqs.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["rope", "rope_3d"])
def test_axial_kinds_have_no_parameters(kind):
    assert list(_rope(kind).parameters()) == []


def test_rope_3d_rotates_the_time_chunk_by_time_only_and_the_rest_by_row_and_col():
    layer = _rope("rope_3d")
    time, row, col = layer.chunks
    assert (time, row, col) == (4, 6, 6)  # round(16 * 0.25 / 2) * 2 = 4, the rest split evenly
    x = torch.randn(1, HEADS, HEAD_DIM)
    at_t = layer(x, torch.tensor([[5.0, 0.0, 0.0]]))
    assert torch.equal(at_t[..., time:], x[..., time:])
    assert not torch.equal(at_t[..., :time], x[..., :time])
    at_col = layer(x, torch.tensor([[0.0, 0.0, 3.0]]))
    assert torch.equal(at_col[..., : time + row], x[..., : time + row])


def test_two_d_axial_rope_turns_the_first_half_by_the_row_and_the_second_by_the_col():
    layer = _rope("rope")
    x = torch.zeros(1, HEADS, HEAD_DIM)
    x[..., 0] = 1.0  # pair 0 of the row half: frequency base^0 = 1
    x[..., HEAD_DIM // 2] = 1.0  # pair 0 of the col half
    turned = layer(x, torch.tensor([[0.5, 2.0]]))[0, 0]
    angle_row, angle_col = torch.tensor(0.5), torch.tensor(2.0)
    torch.testing.assert_close(turned[:2], torch.stack([angle_row.cos(), angle_row.sin()]))
    half = HEAD_DIM // 2
    torch.testing.assert_close(
        turned[half : half + 2], torch.stack([angle_col.cos(), angle_col.sin()])
    )


def test_day_count_starts_at_2000_and_steps_by_calendar_days():
    timestamps = torch.tensor([[1, 0, 2000], [15, 3, 2021], [1, 1, 2000]])
    days = rope.days_since_anchor(timestamps)
    assert days.tolist() == [0.0, 21 * 365.25 + 90 + 14, 31.0]


def test_positions_scale_rows_and_cols_by_the_gsd_ratio_and_time_by_months():
    s2 = torch.zeros(1, 2, 3, 2, 1, 8)  # [B, h, w, T, S, D]
    worldcover = torch.zeros(1, 2, 3, 1, 1, 8)
    timestamps = torch.tensor([[[1, 1, 2000], [1, 3, 2000]]])  # Feb 1st, Apr 1st
    positions = rope.positions_of(
        {"sentinel2_l2a": s2, "worldcover": worldcover},
        "rope_3d_mixed",
        timestamps,
        patch_size=4,
        input_res_m=10.0,
        temporal_scale=1 / 30,
    )
    p = positions["sentinel2_l2a"]
    assert p.shape == (1, 2, 3, 2, 1, 3)
    assert p[0, 1, 2, 0, 0, 1:].tolist() == [4.0, 8.0]  # (row 1, col 2) x 4 px x 10 m / 10 m
    torch.testing.assert_close(p[0, 0, 0, :, 0, 0], torch.tensor([31.0, 90.0]) / 30)
    # A static map sits at the first timestamp's time (the reference's code does so).
    torch.testing.assert_close(
        positions["worldcover"][0, 1, 1, 0, 0], torch.tensor([31 / 30, 4, 4])
    )
    two_d = rope.positions_of({"sentinel2_l2a": s2}, "rope", timestamps, patch_size=2)
    assert two_d["sentinel2_l2a"][0, 1, 2, 1, 0].tolist() == [2.0, 4.0]


def test_encodings_under_rope_drop_the_spatial_quarter_and_under_3d_rope_the_time_slot_too():
    specs = [modalities.get("sentinel2_l2a")]
    tokens = {"sentinel2_l2a": torch.zeros(1, 2, 2, 3, 3, 64)}
    timestamps = torch.tensor([[[1, m, 2020] for m in (0, 4, 8)]])
    absolute = CompositeEncodings(64, specs)(tokens, timestamps, 2)["sentinel2_l2a"]
    for kind, time_kept in (("rope_mixed", True), ("rope_3d_mixed", False)):
        encoded = rope.RopeEncodings(64, specs, kind=kind)(tokens, timestamps, 2)["sentinel2_l2a"]
        channel, time, month, space = encoded.split(16, dim=-1)
        assert torch.equal(space, torch.zeros_like(space))
        assert torch.equal(month, absolute.split(16, dim=-1)[2])
        assert torch.equal(time, absolute.split(16, dim=-1)[1]) is time_kept
        assert time.abs().sum() > 0 if time_kept else time.abs().sum() == 0


def test_self_attention_is_the_same_packed_and_padded_and_needs_positions():
    torch.manual_seed(0)
    layer = rope.RopeSelfAttention(32, HEADS, rope.Rope("rope_3d_mixed", HEADS, 16), qk_norm=True)
    x = torch.randn(2, 5, 32)
    positions = torch.randn(2, 5, 3)
    padded = layer(x, positions=positions)
    packed = layer(
        x.reshape(10, 32), varlen=Varlen((5, 5)), positions=positions.reshape(10, 3)
    ).reshape(2, 5, 32)
    torch.testing.assert_close(packed, padded)
    with pytest.raises(ValueError, match="pass the token positions"):
        layer(x)


def test_qk_norm_makes_attention_invariant_to_the_scale_of_q_and_k_projections():
    torch.manual_seed(0)
    layer = rope.RopeSelfAttention(32, HEADS, qk_norm=True)
    assert layer.q_norm.normalized_shape == (16,)
    x = torch.randn(1, 4, 32)
    before = layer(x)
    with torch.no_grad():
        layer.qkv.weight[:64] *= 10.0  # q and k rows; v untouched
        layer.qkv.bias[:64] *= 10.0
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=1e-4)
    plain = rope.RopeSelfAttention(32, HEADS)
    assert isinstance(plain.q_norm, torch.nn.Identity)


def test_cross_block_rotates_queries_and_keys_by_their_own_positions():
    torch.manual_seed(0)
    block = rope.RopeCrossBlock(32, HEADS, rope=rope.Rope("rope", HEADS, 16)).eval()
    x, context = torch.randn(1, 3, 32), torch.randn(1, 4, 32)
    q_pos, kv_pos = torch.randn(1, 3, 2) * 3, torch.randn(1, 4, 2) * 3
    out = block(x, context, q_positions=q_pos, kv_positions=kv_pos)
    shifted = block(x, context, q_positions=q_pos + 5.0, kv_positions=kv_pos + 5.0)
    torch.testing.assert_close(out, shifted, atol=1e-4, rtol=0)  # only offsets matter
    moved = block(x, context, q_positions=q_pos, kv_positions=kv_pos + 5.0)
    assert (out - moved).abs().max() > 1e-4


def test_bad_settings_get_one_line_errors_naming_the_fix():
    with pytest.raises(ValueError, match="kind must be one of"):
        rope.RopeConfig(kind="rope4d")
    with pytest.raises(ValueError, match="temporal_scale must be positive"):
        rope.RopeConfig(temporal_scale=0.0)
    with pytest.raises(ValueError, match="head dim divisible by 4"):
        rope.RopeConfig().check_heads("EncoderV12Config", 24, 4)  # head dim 6
    with pytest.raises(ValueError, match="cannot split head_dim"):
        rope.RopeConfig(kind="rope_3d", temporal_fraction=0.1).check_heads("X", 32, 4)
    layer = rope.RopeConfig(kind="rope_3d_mixed").build(HEADS, HEAD_DIM)
    with pytest.raises(ValueError, match="3 coordinates"):
        layer(torch.randn(2, HEADS, HEAD_DIM), torch.randn(2, 2))
