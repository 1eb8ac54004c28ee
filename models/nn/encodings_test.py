"""Sincos, month and composite encodings: formulas, GSD scaling, which quarters apply."""

import math

import numpy as np
import pytest
import torch

from models.modalities import modalities
from models.nn import encodings

S2, WORLDCOVER, LATLON = (modalities.get(n) for n in ("sentinel2_l2a", "worldcover", "latlon"))


def test_sincos_1d_uses_exponent_i_over_twice_the_dim():
    positions = np.array([0.0, 1.0, 5.0, 11.0])
    dim = 8
    omega = 1.0 / 10000 ** (np.arange(dim // 2) / (2 * dim))
    expected = np.concatenate(
        [np.sin(positions[:, None] * omega), np.cos(positions[:, None] * omega)], axis=1
    )
    actual = encodings.sincos_1d(torch.tensor(positions), dim).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-6)


def test_sincos_2d_puts_columns_first_and_rows_second():
    grid = encodings.sincos_2d(rows=3, cols=4, resolution=1.0, dim=16)
    assert grid.shape == (3, 4, 16)
    # The first half changes along columns only, the second along rows only.
    assert torch.equal(grid[0, :, :8], grid[2, :, :8])
    assert not torch.equal(grid[:, 0, :8], grid[:, 3, :8])
    assert torch.equal(grid[:, 0, 8:], grid[:, 3, 8:])
    assert not torch.equal(grid[0, :, 8:], grid[2, :, 8:])


def test_spatial_encoding_depends_on_ground_position_not_patch_size():
    """Patch (2, 2) at patch size 2 and patch (1, 1) at patch size 4 are 40 m from the origin."""
    fine = encodings.sincos_2d(3, 3, encodings.ground_resolution(10.0, 2), 16)
    coarse = encodings.sincos_2d(2, 2, encodings.ground_resolution(10.0, 4), 16)
    torch.testing.assert_close(fine[2, 2], coarse[1, 1])
    torch.testing.assert_close(fine[0, 2], coarse[0, 1])


def test_month_table_is_cyclic_and_constant_within_each_half():
    table = encodings.month_table(8)
    assert table.shape == (12, 8)
    step = (table[1] - table[0]).norm()
    torch.testing.assert_close((table[0] - table[11]).norm(), step)
    torch.testing.assert_close(table[3, :4], torch.ones(4))  # sin(pi / 2)
    assert torch.all(table[:, :4] == table[:, :1]) and torch.all(table[:, 4:] == table[:, 4:5])


def _encodings(width=32):
    return encodings.CompositeEncodings(width, [S2, WORLDCOVER, LATLON], max_patch_size=8)


def _timestamps(batch, steps):
    months = torch.arange(batch * steps).reshape(batch, steps) % 12
    return torch.stack([torch.ones_like(months), months, torch.full_like(months, 2020)], -1)


def test_multitemporal_spatial_tokens_get_all_four_quarters():
    enc = _encodings()
    with torch.no_grad():
        enc.channel_embeddings["sentinel2_l2a"].fill_(1.0)
    tokens = torch.zeros(2, 2, 3, 4, 3, 32)
    out = enc.encode_modality("sentinel2_l2a", tokens, _timestamps(2, 4), patch_size=2)
    n = 8
    assert torch.all(out[..., :n] == 1.0)
    torch.testing.assert_close(out[0, 0, 0, :, 0, n : 2 * n], enc.time_table[:4])
    months = _timestamps(2, 4)[1, :, 1]
    torch.testing.assert_close(out[1, 1, 2, :, 2, 2 * n : 3 * n], enc.month_table[months])
    expected_space = encodings.sincos_2d(2, 3, 2.0, n)
    torch.testing.assert_close(out[1, :, :, 3, 1, 3 * n :], expected_space)


def test_static_map_gets_no_time_or_month_and_latlon_only_its_band_set_embedding():
    enc = _encodings()
    tokens = torch.randn(2, 2, 2, 1, 1, 32)
    out = enc.encode_modality("worldcover", tokens, _timestamps(2, 3), patch_size=1)
    assert torch.equal(out[..., 8:24], tokens[..., 8:24])
    assert not torch.equal(out[..., 24:], tokens[..., 24:])
    latlon = torch.randn(2, 1, 32)
    with torch.no_grad():
        enc.channel_embeddings["latlon"].fill_(0.5)
    out = enc.encode_modality("latlon", latlon, _timestamps(2, 3), patch_size=1)
    torch.testing.assert_close(out[..., :8], latlon[..., :8] + 0.5)
    assert torch.equal(out[..., 8:], latlon[..., 8:])


def test_band_set_embeddings_start_at_zero_and_learn():
    enc = _encodings()
    assert all(torch.all(p == 0) for p in enc.channel_embeddings.values())
    tokens = {"sentinel2_l2a": torch.randn(1, 1, 1, 2, 3, 32)}
    enc(tokens, _timestamps(1, 2), patch_size=8)["sentinel2_l2a"].sum().backward()
    assert enc.channel_embeddings["sentinel2_l2a"].grad is not None


@pytest.mark.parametrize(
    "input_res_m, patch_size, rows", [(10.0, 3, 5), (30.0, 2, 4), (10.0, 8, 70)]
)
def test_cached_spatial_tables_equal_fresh_computation(input_res_m, patch_size, rows):
    enc = _encodings()
    fresh = encodings.sincos_2d(
        rows, 3, encodings.ground_resolution(input_res_m, patch_size), enc.quarter
    )
    assert torch.equal(enc.spatial_encoding(rows, 3, patch_size, input_res_m), fresh)


def test_constant_tables_are_buffers_not_in_the_state_dict():
    enc = _encodings()
    assert set(enc.state_dict()) == {f"channel_embeddings.{n}" for n in enc.specs}
    assert {"month_table", "time_table", "grid_axis_tables"} <= dict(enc.named_buffers()).keys()


def test_more_timesteps_than_the_cached_table_are_computed():
    enc = _encodings()
    expected = encodings.sincos_1d(torch.arange(20), enc.quarter)
    torch.testing.assert_close(enc._time_encoding(20), expected)
    assert math.isclose(float(enc._time_encoding(20)[13, 0]), math.sin(13.0), rel_tol=1e-6)


def test_width_must_split_into_even_quarters():
    with pytest.raises(ValueError, match="divisible by 16"):
        encodings.CompositeEncodings(24, [S2])
