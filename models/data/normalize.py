"""Per-band normalization with the OlmoEarth statistics.

Two strategies, tried in order for each modality (as the reference dataset does):
    COMPUTED:   per-band mean and std over the pretraining data (norm_stats/computed.json,
                103,896 samples); [mean - k*std, mean + k*std] maps to [0, 1] with k = 2.
                Values outside that range are NOT clipped (about 5% of a Gaussian band).
    PREDEFINED: per-band min and max (norm_stats/predefined.json) for what has no computed
                stats (lat/lon, OpenStreetMap, WorldCereal, ...); [min, max] maps to [0, 1].
A modality uses COMPUTED only when every one of its bands has computed stats; otherwise the
whole modality uses PREDEFINED. MISSING_VALUE entries are returned untouched so that the
missing-data masks still recognise them after normalization.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from pathlib import Path

import numpy as np

from models.config.configurable import Configurable
from models.modalities import modalities

DEFAULT_STATS_DIR = Path(__file__).resolve().parent / "norm_stats"
COMPUTED_FILENAME = "computed.json"
PREDEFINED_FILENAME = "predefined.json"


class Strategy(enum.Enum):
    COMPUTED = "computed"
    PREDEFINED = "predefined"


class MissingStatsError(KeyError):
    """No strategy has statistics for a band; names the modality, the band and the files."""

    def __init__(self, modality: str, band: str, files: list[str]) -> None:
        self.modality = modality
        self.band = band
        self.files = files
        super().__init__(
            f"no normalization statistics for modality {modality!r} band {band!r}: "
            f"looked in {', '.join(files)}"
        )

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0])


@dataclasses.dataclass(kw_only=True)
class NormalizerConfig(Configurable["Normalizer"]):
    """Where the statistics live and how they are used.

    Attributes:
        stats_dir: folder with computed.json and predefined.json; None = the copies of the
            OlmoEarth files shipped in models/data/norm_stats.
        strategies: tried in this order per modality.
        std_multiplier: k in [mean - k*std, mean + k*std] -> [0, 1] (reference: 2).
    """

    stats_dir: str | None = None
    strategies: tuple[str, ...] = ("computed", "predefined")
    std_multiplier: float = 2.0

    def __post_init__(self) -> None:
        allowed = [strategy.value for strategy in Strategy]
        bad = [name for name in self.strategies if name not in allowed]
        if bad or not self.strategies:
            raise ValueError(
                f"NormalizerConfig.strategies is {self.strategies}; use a non-empty "
                f"subset of {allowed}"
            )
        if not self.std_multiplier > 0:
            raise ValueError(
                f"NormalizerConfig.std_multiplier is {self.std_multiplier}; must be > 0"
            )

    def build(self) -> Normalizer:
        stats_dir = Path(self.stats_dir) if self.stats_dir is not None else DEFAULT_STATS_DIR
        return Normalizer(
            stats_dir=stats_dir,
            strategies=tuple(Strategy(name) for name in self.strategies),
            std_multiplier=self.std_multiplier,
        )


def _load(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path) as handle:
        return json.load(handle)


class Normalizer:
    """Maps raw band values to roughly [0, 1]; see the module docstring."""

    def __init__(
        self,
        stats_dir: str | os.PathLike[str] = DEFAULT_STATS_DIR,
        strategies: tuple[Strategy, ...] = (Strategy.COMPUTED, Strategy.PREDEFINED),
        std_multiplier: float = 2.0,
    ) -> None:
        stats_dir = Path(stats_dir)
        self.files = {
            Strategy.COMPUTED: stats_dir / COMPUTED_FILENAME,
            Strategy.PREDEFINED: stats_dir / PREDEFINED_FILENAME,
        }
        self.stats = {strategy: _load(path) for strategy, path in self.files.items()}
        self.strategies = strategies
        self.std_multiplier = std_multiplier
        self._ranges: dict[str, tuple[Strategy, np.ndarray, np.ndarray]] = {}

    def _range_for(
        self, strategy: Strategy, modality: str, bands: tuple[str, ...]
    ) -> tuple[np.ndarray, np.ndarray] | str:
        """(low, high) per band, or the first band without stats."""
        table = self.stats[strategy].get(modality)
        if not isinstance(table, dict):
            return bands[0]
        low, high = [], []
        for band in bands:
            entry = table.get(band)
            if strategy is Strategy.COMPUTED:
                if not isinstance(entry, dict) or "mean" not in entry or "std" not in entry:
                    return band
                low.append(entry["mean"] - self.std_multiplier * entry["std"])
                high.append(entry["mean"] + self.std_multiplier * entry["std"])
            else:
                if not isinstance(entry, dict) or "min" not in entry or "max" not in entry:
                    return band
                low.append(entry["min"])
                high.append(entry["max"])
        return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)

    def band_range(self, modality: str) -> tuple[Strategy, np.ndarray, np.ndarray]:
        """The strategy used for `modality` and its per-band `[C]` (low, high) -> (0, 1).

        Raises:
            MissingStatsError: no strategy covers every band; names the first band missing
                from the last strategy tried, and every file looked in.
        """
        if modality in self._ranges:
            return self._ranges[modality]
        bands = modalities.get(modality).storage_bands
        first_missing = bands[0]
        for strategy in self.strategies:
            found = self._range_for(strategy, modality, bands)
            if isinstance(found, str):
                first_missing = found
                continue
            low, high = found
            if np.any(high <= low):
                raise ValueError(
                    f"{self.files[strategy]}: {modality} has an empty range for bands "
                    f"{[b for b, lo, hi in zip(bands, low, high, strict=True) if hi <= lo]}"
                )
            self._ranges[modality] = (strategy, low, high)
            return self._ranges[modality]
        raise MissingStatsError(
            modality, first_missing, [str(self.files[strategy]) for strategy in self.strategies]
        )

    def normalize(
        self, modality: str, values: np.ndarray, dtype: np.dtype = np.float32
    ) -> np.ndarray:
        """`values` `[..., C]` mapped band-wise to [0, 1]; MISSING_VALUE entries unchanged.

        The arithmetic runs in float64, as the reference's (its stats are float64 arrays),
        and is cast to `dtype` at the end.
        """
        _, low, high = self.band_range(modality)
        if values.shape[-1] != low.shape[0]:
            raise ValueError(
                f"{modality} values have {values.shape[-1]} bands; its stats have {low.shape[0]}"
            )
        normalized = (values - low) / (high - low)
        missing = values == modalities.MISSING_VALUE
        return np.where(missing, values, normalized).astype(dtype, copy=False)
