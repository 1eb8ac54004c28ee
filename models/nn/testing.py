"""Tiny random inputs for model tests (CPU, a few dozen tokens)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from models.modalities import modalities
from models.modalities.samples import MASK_DTYPE, MaskedSample, MaskValue


def random_timestamps(batch: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """[B, T, 3] of (day 1..28, month 0..11, year 2020)."""
    day = torch.randint(1, 29, (batch, steps, 1), generator=generator)
    month = torch.randint(0, 12, (batch, steps, 1), generator=generator)
    year = torch.full((batch, steps, 1), 2020)
    return torch.cat([day, month, year], dim=-1)


def random_masked_sample(
    batch: int = 2,
    size: int = 4,
    steps: int = 2,
    patch_size: int = 2,
    names: Sequence[str] = modalities.TRAINING_MODALITIES,
    seed: int = 0,
    tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION,
    encoder_ratio: float = 0.5,
    decoder_ratio: float = 0.3,
) -> MaskedSample:
    """Random data and a random view: masks constant inside each patch_size x patch_size patch.

    Encodable modalities get ONLINE_ENCODER with probability `encoder_ratio`, DECODER with
    `decoder_ratio`, else TARGET_ONLY; decode-only maps get only DECODER or TARGET_ONLY. In every
    sample, the first token of each encodable modality is ONLINE_ENCODER and the first token of
    each decode-only modality is DECODER, so every modality takes part.
    """
    generator = torch.Generator().manual_seed(seed)
    data, masks = {}, {}
    for spec in tokenization.specs(names):
        num_sets = spec.num_band_sets
        if spec.is_spatial:
            time_axis = steps if spec.is_multitemporal else 1
            data[spec.name] = torch.randn(
                batch, size, size, time_axis, spec.num_bands, generator=generator
            )
            token_shape = (batch, size // patch_size, size // patch_size, time_axis, num_sets)
        else:
            data[spec.name] = torch.randn(batch, spec.num_bands, generator=generator)
            token_shape = (batch, num_sets)
        draw = torch.rand(token_shape, generator=generator)
        mask = torch.full(token_shape, MaskValue.TARGET_ONLY, dtype=MASK_DTYPE)
        if spec.decode_only:
            mask[draw < decoder_ratio] = MaskValue.DECODER
            mask.view(batch, -1)[:, 0] = MaskValue.DECODER
        else:
            mask[draw < encoder_ratio] = MaskValue.ONLINE_ENCODER
            mask[(draw >= encoder_ratio) & (draw < encoder_ratio + decoder_ratio)] = (
                MaskValue.DECODER
            )
            mask.view(batch, -1)[:, 0] = MaskValue.ONLINE_ENCODER
        if spec.is_spatial:
            mask = mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
        masks[spec.name] = mask
    timestamps = random_timestamps(batch, steps, generator)
    return MaskedSample(data=data, masks=masks, timestamps=timestamps)


def with_missing_timestep(sample: MaskedSample, index: int, step: int) -> MaskedSample:
    """A copy where sample `index` has no data at timestep `step` in every multitemporal
    modality (data MISSING_VALUE, masks MISSING), as the data pipeline fills gaps."""
    data = {name: value.clone() for name, value in sample.data.items()}
    masks = {name: value.clone() for name, value in sample.masks.items()}
    for name in data:
        if modalities.get(name).is_spacetime:
            data[name][index, :, :, step] = modalities.MISSING_VALUE
            masks[name][index, :, :, step] = MaskValue.MISSING
    return MaskedSample(data=data, masks=masks, timestamps=sample.timestamps.clone())


def select(sample: MaskedSample, indices: Sequence[int]) -> MaskedSample:
    """The samples `indices` of a batch."""
    rows = list(indices)
    return MaskedSample(
        data={name: value[rows] for name, value in sample.data.items()},
        masks={name: value[rows] for name, value in sample.masks.items()},
        timestamps=sample.timestamps[rows],
    )
