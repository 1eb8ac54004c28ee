"""Random fields: smoothness, region maps, adjacency and lines."""

import numpy as np

from models.data import fields


def test_smooth_noise_is_standardized_and_correlated_over_its_scale():
    rng = np.random.default_rng(0)
    smooth = fields.smooth_noise(rng, 64, 6.0)
    rough = fields.smooth_noise(rng, 64, 0.5)
    assert abs(smooth.mean()) < 1e-9 and abs(smooth.std() - 1) < 1e-9

    def neighbour_correlation(field):
        return np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]

    assert neighbour_correlation(smooth) > 0.9
    assert neighbour_correlation(rough) < 0.6


def test_same_generator_state_gives_the_same_field():
    first = fields.smooth_noise(np.random.default_rng(5), 16, 3.0)
    np.testing.assert_array_equal(first, fields.smooth_noise(np.random.default_rng(5), 16, 3.0))


def test_unit_field_spans_zero_to_one():
    field = fields.unit_field(np.random.default_rng(1), 32, 4.0)
    assert field.min() == 0 and field.max() == 1


def test_warped_voronoi_labels_regions_and_adjacency_matches_shared_edges():
    regions = fields.warped_voronoi(np.random.default_rng(2), 32, 6, warp_px=3.0)
    assert regions.shape == (32, 32) and set(np.unique(regions)) <= set(range(6))
    adjacency = fields.region_adjacency(regions, 6)
    assert (adjacency == adjacency.T).all() and not adjacency.diagonal().any()
    for a in range(6):
        for b in range(6):
            touching = np.any((regions[1:] == a) & (regions[:-1] == b)) or np.any(
                (regions[:, 1:] == a) & (regions[:, :-1] == b)
            )
            if a != b and touching:
                assert adjacency[a, b]
    # Regions are blobs, not salt and pepper: most pixels share their right neighbour's id.
    assert (regions[:, 1:] == regions[:, :-1]).mean() > 0.85


def test_line_mask_is_a_thin_straight_line():
    mask = fields.line_mask(np.random.default_rng(3), 40)
    rows, cols = np.nonzero(mask)
    assert 20 <= mask.sum() <= 3 * 40 * 1.5
    # A straight line: the pixels are well explained by one linear fit.
    if np.ptp(cols) >= np.ptp(rows):
        residual = rows - np.polyval(np.polyfit(cols, rows, 1), cols)
    else:
        residual = cols - np.polyval(np.polyfit(rows, cols, 1), rows)
    assert np.abs(residual).max() < 1.5
