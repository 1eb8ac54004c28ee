"""Random 2-D fields for the synthetic Earth: smooth noise, irregular regions, line features.

Everything is numpy-only and driven by a caller's `np.random.Generator`, so a seed fixes
the output exactly (FFT smoothing is deterministic for a given input).
"""

from __future__ import annotations

import numpy as np


def smooth_noise(rng: np.random.Generator, size: int, scale_px: float) -> np.ndarray:
    """A `[size, size]` Gaussian random field with correlation length ~`scale_px`.

    White noise low-passed by a Gaussian of std `scale_px` pixels (in the Fourier domain,
    so the field wraps around at the edges), rescaled to mean 0 and std 1.
    """
    white = rng.standard_normal((size, size))
    freq = np.fft.fftfreq(size)
    f2 = freq[:, None] ** 2 + freq[None, :] ** 2
    # Fourier transform of a unit Gaussian kernel of std s: exp(-2 pi^2 s^2 f^2).
    field = np.fft.ifft2(np.fft.fft2(white) * np.exp(-2.0 * np.pi**2 * scale_px**2 * f2)).real
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field


def unit_field(rng: np.random.Generator, size: int, scale_px: float) -> np.ndarray:
    """`smooth_noise` min-max scaled to [0, 1]."""
    field = smooth_noise(rng, size, scale_px)
    span = field.max() - field.min()
    return (field - field.min()) / span if span > 0 else np.zeros_like(field)


def warped_voronoi(
    rng: np.random.Generator, size: int, num_cells: int, warp_px: float
) -> np.ndarray:
    """`[size, size]` region ids 0..num_cells-1: nearest-seed cells with wavy borders.

    Each pixel's coordinates are displaced by two smooth fields of amplitude ~`warp_px`
    before the nearest seed is found, which turns straight Voronoi edges into the irregular
    boundaries of fields, forests and lakes.
    """
    seeds = rng.uniform(0, size, (num_cells, 2))
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    scale = size / 6
    rows = rows + warp_px * smooth_noise(rng, size, scale)
    cols = cols + warp_px * smooth_noise(rng, size, scale)
    dist = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
    return np.argmin(dist, axis=-1)


def region_adjacency(regions: np.ndarray, num_regions: int) -> np.ndarray:
    """`[K, K]` bool: True where two regions share a horizontal or vertical pixel edge."""
    adjacent = np.zeros((num_regions, num_regions), dtype=bool)
    for a, b in ((regions[1:], regions[:-1]), (regions[:, 1:], regions[:, :-1])):
        differ = a != b
        adjacent[a[differ], b[differ]] = True
    return adjacent | adjacent.T


def line_mask(rng: np.random.Generator, size: int, width_px: float = 1.0) -> np.ndarray:
    """`[size, size]` bool: a straight line of `width_px` through a random point."""
    row0, col0 = rng.uniform(0, size, 2)
    angle = rng.uniform(0, np.pi)
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    distance = np.abs((rows - row0) * np.cos(angle) - (cols - col0) * np.sin(angle))
    return distance < width_px / 2 + 0.25
