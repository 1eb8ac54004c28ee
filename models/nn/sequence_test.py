"""Sequence layout (canonical order, round trips) and left-packing of kept tokens."""

import torch

from models.nn import sequence


def test_collapse_orders_modalities_canonically_and_split_inverts_it():
    tokens = {
        "worldcover": torch.randn(2, 2, 2, 1, 1, 4),
        "sentinel2_l2a": torch.randn(2, 2, 2, 3, 3, 4),
        "latlon": torch.randn(2, 1, 4),
    }
    masks = {name: torch.zeros(t.shape[:-1], dtype=torch.int8) for name, t in tokens.items()}
    flat, flat_mask, layout = sequence.collapse(tokens, masks)
    assert layout.names == ("sentinel2_l2a", "worldcover", "latlon")
    assert layout.counts == (36, 4, 1) and flat.shape == (2, 41, 4) and flat_mask.shape == (2, 41)
    assert torch.equal(flat[:, 0], tokens["sentinel2_l2a"][:, 0, 0, 0, 0])
    assert torch.equal(flat[:, 1], tokens["sentinel2_l2a"][:, 0, 0, 0, 1])  # band set fastest
    back = sequence.split(flat, layout)
    assert all(torch.equal(back[name], tokens[name]) for name in tokens)
    assert torch.equal(sequence.concat(back, layout), flat)


def test_pack_keeps_order_pads_to_longest_and_unpack_restores_zeros_elsewhere():
    tokens = torch.arange(1, 13, dtype=torch.float32).reshape(2, 6, 1)
    keep = torch.tensor([[0, 1, 0, 1, 1, 0], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    packed = sequence.pack(tokens, keep)
    assert packed.tokens[:, :, 0].tolist() == [[2.0, 4.0, 5.0], [7.0, 0.0, 0.0]]
    assert packed.kept.tolist() == [[True] * 3, [True, False, False]]
    assert torch.equal(packed.attn_mask, packed.kept)
    restored = sequence.unpack(packed.tokens * 10, packed)
    assert torch.equal(restored, tokens * 10 * keep[:, :, None])


def test_no_padding_means_no_attention_mask():
    packed = sequence.pack(torch.randn(2, 4, 3), torch.tensor([[1, 0, 1, 0], [0, 1, 1, 0]]).bool())
    assert packed.attn_mask is None and packed.tokens.shape == (2, 2, 3)


def test_a_sample_with_nothing_kept_attends_to_one_zero_slot():
    keep = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    packed = sequence.pack(torch.randn(2, 3, 4), keep)
    assert packed.attn_mask.tolist() == [[True, True], [True, False]]
    assert torch.all(packed.tokens[1] == 0)


def test_pack_records_each_samples_kept_count_for_the_packed_blocks():
    keep = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    packed = sequence.pack(torch.randn(3, 4, 2), keep)
    assert packed.varlen.lengths == (3, 0, 1)
    assert sequence.unpacked(torch.randn(2, 5, 3)).varlen.lengths == (5, 5)
