"""Tiny synthetic samples with known missing data, for the masking tests (test-only)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.modalities import modalities
from models.modalities.samples import Sample

MISSING = modalities.MISSING_VALUE


def tiny_sample(
    batch: int = 4,
    size: int = 8,
    steps: int = 4,
    names: Sequence[str] = modalities.TRAINING_MODALITIES,
    seed: int = 0,
    with_gaps: bool = True,
) -> Sample:
    """Random data for `names`; with `with_gaps`, known holes (batch >= 4 needed):

    - sample 0: S2 timestep 1 missing (all bands), S2's 40 m band set missing at t=2;
    - sample 1: Sentinel-1 missing entirely, WorldCover missing entirely;
    - sample 2: Landsat missing at the first and last timesteps;
    - sample 3: complete.
    Holes are whole patches for any patch size dividing `size`, except the one-pixel
    hole in sample 3's SRTM at (0, 1), which tests pixel-exact MISSING. Timestep indices
    past `steps - 1` are clamped to the last timestep.
    """
    generator = torch.Generator().manual_seed(seed)
    data = {}
    for name in names:
        spec = modalities.get(name)
        if spec.is_spatial:
            shape = (batch, size, size, steps if spec.is_multitemporal else 1, spec.num_bands)
        else:
            shape = (batch, spec.num_bands)
        data[name] = torch.rand(shape, generator=generator)
    if with_gaps:
        if batch < 4:
            raise ValueError(f"with_gaps needs batch >= 4; got {batch}")
        last = steps - 1
        if "sentinel2_l2a" in data:
            s2 = data["sentinel2_l2a"]
            s2[0, :, :, min(1, last)] = MISSING
            band_set_40m = list(modalities.SENTINEL2_L2A.band_set_indices()[2])  # B01, B09
            s2[0, :, :, min(2, last), band_set_40m] = MISSING
        if "sentinel1" in data:
            data["sentinel1"][1] = MISSING
        if "worldcover" in data:
            data["worldcover"][1] = MISSING
        if "landsat" in data:
            data["landsat"][2, :, :, [0, last]] = MISSING
        if "srtm" in data and size > 1:
            data["srtm"][3, 0, 1] = MISSING
    timestamps = torch.zeros(batch, steps, 3, dtype=torch.long)
    timestamps[..., 1] = torch.arange(steps)
    return Sample(data=data, timestamps=timestamps)


def count(mask: torch.Tensor, value: int) -> int:
    return int((mask == value).sum())
