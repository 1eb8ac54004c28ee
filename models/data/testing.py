"""Small helpers for the tests of models/data: tiny random samples and a tiny masking.

`PatchMasking` follows the masking-strategy interface (`apply(sample, patch_size,
generator) -> MaskedSample`) so the collate and the loader can be tested without
models/masking.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from models.data.h5_format import CompressionConfig, H5DatasetWriter, SampleRecord
from models.modalities import modalities
from models.modalities.samples import MaskedSample, MaskValue, Sample

# Value ranges per modality, in stored units, chosen inside the real statistics.
_RANGES = {
    "sentinel2_l2a": (0, 5000, np.uint16),
    "landsat": (7000, 20000, np.uint16),
    "sentinel1": (-25.0, -2.0, np.float32),
    "srtm": (0, 3000, np.int16),
    "openstreetmap_raster": (0, 2, np.uint8),
    "wri_canopy_height_map": (0, 30, np.uint8),
    "cdl": (1, 200, np.uint8),
    "worldcereal": (0, 101, np.uint8),
}


def random_record(
    rng: np.random.Generator,
    size: int = 8,
    timesteps: int = 4,
    names: Iterable[str] = modalities.TRAINING_MODALITIES,
    present: Mapping[str, Sequence[bool]] | None = None,
    latlon: tuple[float, float] = (45.0, 7.0),
) -> SampleRecord:
    """A sample with random values in plausible stored ranges.

    Args:
        present: per multitemporal modality, which of the `timesteps` are stored
            (default: all).
    """
    present = dict(present or {})
    arrays: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for name in names:
        spec = modalities.get(name)
        if name == "worldcover":
            codes = rng.choice(modalities.WORLDCOVER_CLASSES, (size, size, 1, 1))
            arrays[name] = codes.astype(np.uint8)
            continue
        low, high, dtype = _RANGES[name]
        if spec.is_multitemporal:
            mask = np.asarray(present.get(name, [True] * timesteps), dtype=bool)
            masks[name] = mask
            shape = (size, size, int(mask.sum()), spec.num_bands)
        else:
            shape = (size, size, 1, spec.num_bands)
        if np.issubdtype(dtype, np.floating):
            arrays[name] = rng.uniform(low, high, shape).astype(dtype)
        else:
            arrays[name] = rng.integers(low, high, shape).astype(dtype)
    months = np.arange(timesteps) % 12
    timestamps = np.stack([np.ones(timesteps), months, np.full(timesteps, 2020)], -1)
    return SampleRecord(
        modalities=arrays,
        timestamps=timestamps.astype(np.int32),
        latlon=np.asarray(latlon, dtype=np.float32),
        present_timesteps=masks,
    )


def write_dataset(
    root: str | os.PathLike[str],
    records: Sequence[SampleRecord],
    compression: CompressionConfig | None = None,
    names: Sequence[str] = modalities.TRAINING_MODALITIES,
) -> Path:
    """Writes `records` as a dataset under `root`; returns the sample directory."""
    size = next(iter(records[0].modalities.values())).shape[0]
    writer = H5DatasetWriter(root, names, len(records), compression, tile_size=size)
    for index, record in enumerate(records):
        writer.write(index, record)
    return writer.finish()


class PatchMasking:
    """Hides a random half of the patches of each band set (DECODER), keeps MISSING."""

    def __init__(self, decode_ratio: float = 0.5) -> None:
        self.decode_ratio = decode_ratio

    def apply(self, sample: Sample, patch_size: int, generator: torch.Generator) -> MaskedSample:
        masked = MaskedSample.from_sample(sample)
        for name in masked.modality_names:
            mask = masked.masks[name]
            if mask.dim() != 5:
                continue
            batch, height, width, steps, sets = mask.shape
            coarse = (height // patch_size, width // patch_size)
            draw = torch.rand((batch, *coarse, steps, sets), generator=generator)
            hidden = draw < self.decode_ratio
            hidden = hidden.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
            mask[(mask != MaskValue.MISSING) & hidden] = MaskValue.DECODER
        return masked
