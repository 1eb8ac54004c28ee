"""`MaskedDataLoaderConfig`: the data loader section of an experiment, masking included.

It is models.data's `DataLoaderConfig` plus the masking strategy, because batches are
masked inside the loader workers (as in the reference, where the masking config travels
with the data loader). One section holds both, so `--data_loader.num_workers=2` and
`--data_loader.masking.encode_ratio=0.4` both work. It lives beside the loader it
configures (it moved here from experiments/framework/data.py; old run folders name the
old path, which models/config/serialization.py's CLASS_ALIASES still resolves).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from models.data.loader import DataLoaderConfig, EarthDataLoader
from models.masking.base import MaskingConfig
from models.masking.modality_cross import ModalityCrossRandomMaskingConfig


def v1_masking() -> MaskingConfig:
    """The v1 recipe's masking: modality_cross_random, 50% encoded / 50% decoded tokens,
    encoding and decoding the same band set allowed, at least 2 band sets encoded, the six
    maps decode-only (the strategy's defaults)."""
    return ModalityCrossRandomMaskingConfig(
        encode_ratio=0.5,
        decode_ratio=0.5,
        allow_encoding_decoding_same_bandset=True,
        min_encoded_bandsets=2,
    )


@dataclasses.dataclass(kw_only=True)
class MaskedDataLoaderConfig(DataLoaderConfig):
    """`DataLoaderConfig` plus the masking strategy applied twice to each batch.

    Attributes:
        masking: the strategy config (any models.masking config).
    """

    masking: MaskingConfig = dataclasses.field(default_factory=v1_masking)

    def build_loader(self, dataset: Any, rank: int = 0, world_size: int = 1) -> EarthDataLoader:
        """The data loader over `dataset`, masking with `self.masking`."""
        return self.build(dataset, self.masking.build(), rank=rank, world_size=world_size)
