"""The training dataset: one H5 sample -> one budgeted, normalized training instance.

`dataset[GetItemArgs(index, patch_size, patches_per_side, token_budget)]` does, in order
(the reference's `OlmoEarthDataset.__getitem__`):
    1. read the H5 file and check it (band counts, shapes, NaN, timestamps);
    2. cut the time axis to the first..last step where any modality has data, pad the
       timestamps to `max_timesteps` by repeating the last one, and place every stored
       timestep at its position; missing timesteps and modalities become MISSING_VALUE;
    3. pick the largest T that fits the token budget (models.data.crop) and a random
       window of patches_per_side * patch_size pixels and T steps;
    4. normalize every value that is not MISSING_VALUE.
A bad sample raises `SampleError` naming the file and the field, or, with
`skip_bad_samples=True`, is replaced by the next sample in index order; the skip is counted
(`EarthDataset.num_skipped`), logged, and reported with the item (`DatasetItem.skipped`) so
the loader can count it in the main process.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch

from models.config.configurable import Configurable
from models.data import crop, h5_format
from models.data.h5_format import SampleError
from models.data.normalize import NormalizerConfig
from models.modalities import modalities

logger = logging.getLogger(__name__)

DTYPES = {"float32": np.float32, "float64": np.float64}
"""float16 is not offered: MISSING_VALUE (-99999) is outside its range (max 65504)."""


class GetItemArgs(NamedTuple):
    """What the loader asks of the dataset for one instance.

    Attributes:
        index: position in the dataset, 0..len-1.
        patch_size: P, pixels per patch side.
        patches_per_side: h = w, patches per side of the crop window.
        token_budget: most tokens per instance; None keeps every timestep.
        crop_seed: seeds the window draw; None seeds it with `index` (same crop each time).
    """

    index: int
    patch_size: int
    patches_per_side: int
    token_budget: int | None = crop.DEFAULT_TOKEN_BUDGET
    crop_seed: int | None = None


@dataclasses.dataclass
class DatasetItem:
    """One training instance (no batch axis).

    Attributes:
        index: the dataset position that was asked for.
        source: the H5 file the data came from.
        patch_size: P of the request (the loader keeps it per batch).
        data: spatial modalities `[H, W, T, C]` with H = W = patches_per_side * P (static
            maps T = 1); latlon `[2]`. Normalized; MISSING_VALUE where there is no data.
        timestamps: `[T, 3]` int64 (day, month 0..11, year).
        skipped: files that were skipped in favour of this one (skip_bad_samples).
    """

    index: int
    source: str
    patch_size: int
    data: dict[str, np.ndarray]
    timestamps: np.ndarray
    skipped: tuple[str, ...] = ()


@dataclasses.dataclass(kw_only=True)
class DatasetConfig(Configurable["EarthDataset"]):
    """Configuration of `EarthDataset`.

    Attributes:
        h5_dir: the folder with sample_<i>.h5 and sample_metadata.csv.
        training_modalities: what each instance holds (missing ones are filled).
        normalize: map values with the OlmoEarth statistics (models.data.normalize).
        normalizer: where the statistics are and how they are used.
        tokenization: band sets used to count tokens against the budget.
        skip_bad_samples: replace a bad sample by the next one (counted and logged)
            instead of raising.
        max_skips_per_item: consecutive bad samples tolerated for one item before raising.
        dtype: float type of the returned data (float32 or float64).
        max_timesteps: length every time series is padded to (12 monthly steps).
    """

    h5_dir: str
    training_modalities: tuple[str, ...] = modalities.TRAINING_MODALITIES
    normalize: bool = True
    normalizer: NormalizerConfig = dataclasses.field(default_factory=NormalizerConfig)
    tokenization: modalities.Tokenization = modalities.DEFAULT_TOKENIZATION
    skip_bad_samples: bool = False
    max_skips_per_item: int = 8
    dtype: str = "float32"
    max_timesteps: int = modalities.MAX_TIMESTEPS

    def __post_init__(self) -> None:
        self.training_modalities = tuple(self.training_modalities)
        if not self.training_modalities:
            raise ValueError("DatasetConfig.training_modalities is empty; name at least one")
        if len(set(self.training_modalities)) != len(self.training_modalities):
            raise ValueError(
                f"DatasetConfig.training_modalities repeats a name: {self.training_modalities}"
            )
        unknown = [name for name in self.training_modalities if name not in modalities.MODALITIES]
        if unknown:
            raise ValueError(
                f"DatasetConfig.training_modalities has unknown {unknown}; "
                f"allowed: {list(modalities.MODALITIES)}"
            )
        if not any(modalities.get(name).is_spatial for name in self.training_modalities):
            raise ValueError("DatasetConfig.training_modalities needs a spatial modality")
        if self.dtype not in DTYPES:
            raise ValueError(f"DatasetConfig.dtype is {self.dtype!r}; allowed: {list(DTYPES)}")
        if self.max_timesteps < 1:
            raise ValueError(f"DatasetConfig.max_timesteps is {self.max_timesteps}; must be >= 1")
        if self.max_skips_per_item < 0:
            raise ValueError(
                f"DatasetConfig.max_skips_per_item is {self.max_skips_per_item}; must be >= 0"
            )

    def build(self) -> EarthDataset:
        return EarthDataset(self)


class EarthDataset(torch.utils.data.Dataset):
    """Map-style dataset over the samples of one H5 directory; see the module docstring."""

    def __init__(self, config: DatasetConfig) -> None:
        self.config = config
        self.h5_dir = Path(config.h5_dir)
        if not self.h5_dir.is_dir():
            raise FileNotFoundError(f"DatasetConfig.h5_dir {self.h5_dir} is not a directory")
        self.modality_names = modalities.canonical_order(config.training_modalities)
        self.specs = {name: config.tokenization.spec(name) for name in self.modality_names}
        self.dtype = DTYPES[config.dtype]
        self.max_timesteps = config.max_timesteps
        self.skip_bad_samples = config.skip_bad_samples
        self.normalizer = config.normalizer.build() if config.normalize else None
        if self.normalizer is not None:
            for name in self.modality_names:
                self.normalizer.band_range(name)  # fail now, not in a worker hours later
        self.sample_indices = self._select_samples()
        if len(self.sample_indices) == 0:
            raise ValueError(f"{self.h5_dir} has no sample with a multitemporal training modality")
        self.num_skipped = 0
        self.image_size = self._probe_image_size()

    def _select_samples(self) -> np.ndarray:
        """Sample ids that have at least one multitemporal training modality (reference rule)."""
        rows = h5_format.read_metadata(self.h5_dir)
        timeseries = [name for name in self.modality_names if self.specs[name].is_spacetime]
        if not timeseries:
            return np.asarray([int(row["sample_index"]) for row in rows], dtype=np.int64)
        keep = [
            int(row["sample_index"])
            for row in rows
            if any(row.get(name, "0") not in ("", "0") for name in timeseries)
        ]
        return np.asarray(keep, dtype=np.int64)

    def _probe_image_size(self) -> int:
        """Pixels per side of the samples, read from the first readable sample's shapes."""
        for sample_id in self.sample_indices[: self.config.max_skips_per_item + 1]:
            path = self.sample_path_of(int(sample_id))
            try:
                with h5py.File(path, "r") as h5:
                    for name in self.modality_names:
                        if self.specs[name].is_spatial and name in h5:
                            return int(min(h5[name].shape[:2]))
            except OSError as error:
                if not self.skip_bad_samples:
                    raise SampleError(
                        path, "file", f"not a readable HDF5 sample ({error})"
                    ) from error
        raise ValueError(f"{self.h5_dir}: no readable sample with a spatial training modality")

    def __len__(self) -> int:
        return len(self.sample_indices)

    def sample_path_of(self, sample_id: int) -> Path:
        return h5_format.sample_path(self.h5_dir, sample_id)

    def token_counts(self, patches_per_side: int) -> tuple[int, int]:
        """(static tokens, tokens per timestep) of an instance of this dataset."""
        return crop.token_counts(self.specs.values(), patches_per_side)

    def __getitem__(self, args: GetItemArgs) -> DatasetItem:
        if not isinstance(args, GetItemArgs):
            raise TypeError(f"index the dataset with GetItemArgs, not {type(args).__name__}")
        if not 0 <= args.index < len(self):
            raise IndexError(f"index {args.index} outside 0..{len(self) - 1}")
        seed = args.crop_seed if args.crop_seed is not None else args.index
        skipped: list[str] = []
        last_error: SampleError | None = None
        for attempt in range(self.config.max_skips_per_item + 1):
            sample_id = int(self.sample_indices[(args.index + attempt) % len(self)])
            path = self.sample_path_of(sample_id)
            try:
                item = self._load(path, args, np.random.default_rng(seed))
            except SampleError as error:
                if not self.skip_bad_samples:
                    raise
                self.num_skipped += 1
                logger.warning(
                    "skipping bad sample (%d skipped so far): %s", self.num_skipped, error
                )
                skipped.append(str(path))
                last_error = error
                continue
            item.skipped = tuple(skipped)
            return item
        raise RuntimeError(
            f"{self.config.max_skips_per_item + 1} consecutive samples from index {args.index} "
            f"are bad; the last: {last_error}"
        )

    def _validate(self, path: Path, record: h5_format.SampleRecord) -> tuple[int, int]:
        """Checks a record against the registry; returns its (H, W)."""
        timestamps = record.timestamps
        if timestamps.ndim != 2 or timestamps.shape[1] != 3 or timestamps.shape[0] < 1:
            raise SampleError(path, "timestamps", f"has shape {timestamps.shape}; expected [T, 3]")
        if timestamps.shape[0] > self.max_timesteps:
            raise SampleError(
                path,
                "timestamps",
                f"has {timestamps.shape[0]} steps; max_timesteps is {self.max_timesteps}",
            )
        if not np.all(np.isfinite(timestamps)) or np.any(
            (timestamps[:, 1] < 0) | (timestamps[:, 1] > 11)
        ):
            raise SampleError(path, "timestamps", "has a month outside 0..11 or a non-finite value")
        size: tuple[int, int] | None = None
        for name, array in record.modalities.items():
            spec = modalities.get(name)
            if array.shape[-1] != spec.num_bands:
                raise SampleError(
                    path,
                    name,
                    f"has {array.shape[-1]} bands; expected {spec.num_bands} "
                    f"{list(spec.storage_bands)}",
                )
            if array.ndim != 4:
                raise SampleError(path, name, f"has shape {array.shape}; expected [H, W, T, C]")
            if size is None:
                size = (array.shape[0], array.shape[1])
            elif array.shape[:2] != size:
                raise SampleError(
                    path,
                    name,
                    f"is {array.shape[0]}x{array.shape[1]} pixels; other "
                    f"modalities are {size[0]}x{size[1]}",
                )
            if spec.is_multitemporal:
                present = record.present_timesteps.get(name)
                field = f"{h5_format.MISSING_TIMESTEPS_GROUP}/{name}"
                if present is not None and present.shape != (record.num_timesteps,):
                    raise SampleError(
                        path,
                        field,
                        f"has shape {present.shape}; timestamps has {record.num_timesteps} steps",
                    )
                stored = record.num_timesteps if present is None else int(present.sum())
                if array.shape[2] != stored:
                    raise SampleError(
                        path, name, f"stores {array.shape[2]} timesteps; the mask says {stored}"
                    )
            elif array.shape[2] != 1:
                raise SampleError(path, name, f"is a static map with {array.shape[2]} timesteps")
            if np.issubdtype(array.dtype, np.floating):
                nan = int(np.isnan(array).sum())
                if nan:
                    raise SampleError(path, name, f"has {nan} NaN pixels")
                if not np.all(np.isfinite(array)):
                    raise SampleError(path, name, "has infinite values")
        if size is None:
            raise SampleError(
                path, "file", f"has none of the modalities {list(self.modality_names)}"
            )
        if "latlon" in self.modality_names and (
            record.latlon.shape != (2,) or not np.all(np.isfinite(record.latlon))
        ):
            raise SampleError(path, "latlon", f"is {record.latlon!r}; expected 2 finite values")
        return size

    def _load(self, path: Path, args: GetItemArgs, rng: np.random.Generator) -> DatasetItem:
        with h5_format.open_sample(path, self.modality_names) as record:
            # Floating-point arrays (Sentinel-1) are read whole, to check them for NaN and
            # infinity everywhere; the others stay in the file until the window is known, and
            # only the window is read (half the read time on the official 128 px zstd files).
            for name, array in record.modalities.items():
                if np.issubdtype(array.dtype, np.floating):
                    record.modalities[name] = array.read()
            return self._load_record(path, record, args, rng)

    def _load_record(
        self,
        path: Path,
        record: h5_format.SampleRecord,
        args: GetItemArgs,
        rng: np.random.Generator,
    ) -> DatasetItem:
        height, width = self._validate(path, record)

        # Cut the series to the steps where some modality has data, then pad to a fixed
        # length so every instance of a batch has the same T.
        present = {
            name: record.present_timesteps.get(name, np.ones(record.num_timesteps, dtype=bool))
            for name, array in record.modalities.items()
            if modalities.get(name).is_multitemporal
        }
        observed = (
            np.flatnonzero(np.any(np.stack(list(present.values())), axis=0)) if present else None
        )
        if observed is not None and observed.size == 0:
            raise SampleError(
                path, h5_format.MISSING_TIMESTEPS_GROUP, "no modality has any timestep"
            )
        first, last = (
            (0, record.num_timesteps - 1) if observed is None else (observed[0], observed[-1])
        )
        current_length = int(last - first + 1)
        timestamps = record.timestamps[first : last + 1].astype(np.int64)
        timestamps = np.pad(
            timestamps, ((0, self.max_timesteps - current_length), (0, 0)), mode="edge"
        )
        present = {name: mask[first : last + 1] for name, mask in present.items()}

        num_t = crop.max_timesteps_within_budget(
            self.specs.values(), args.patches_per_side, args.token_budget, self.max_timesteps
        )
        starts = crop.valid_start_timesteps(present, num_t, current_length)
        window_px = args.patches_per_side * args.patch_size
        if window_px > min(height, width):
            raise SampleError(
                path,
                "shape",
                f"is {height}x{width} pixels; the window is {window_px}px "
                f"({args.patches_per_side} patches of {args.patch_size})",
            )
        window = crop.sample_crop_window(rng, height, width, window_px, num_t, starts)

        data: dict[str, np.ndarray] = {}
        for name in self.modality_names:
            spec = self.specs[name]
            if not spec.is_spatial:
                data[name] = record.latlon.astype(self.dtype)
            elif name not in record.modalities:
                steps = num_t if spec.is_multitemporal else 1
                shape = (window_px, window_px, steps, spec.num_bands)
                data[name] = np.full(shape, modalities.MISSING_VALUE, dtype=self.dtype)
            else:
                data[name] = self._crop_modality(
                    name, record.modalities[name], present.get(name), window
                )
            if self.normalizer is not None:
                data[name] = self.normalizer.normalize(name, data[name], self.dtype)
        return DatasetItem(
            index=args.index,
            source=str(path),
            patch_size=args.patch_size,
            data=data,
            timestamps=timestamps[window.start_t : window.start_t + num_t],
        )

    def _crop_modality(
        self,
        name: str,
        stored: np.ndarray | h5_format.StoredArray,
        present: np.ndarray | None,
        window: crop.CropWindow,
    ) -> np.ndarray:
        rows = slice(window.top, window.top + window.size)
        cols = slice(window.left, window.left + window.size)
        if present is None:  # static map [h, w, 1, C]
            return stored[rows, cols].astype(self.dtype)
        # Stored step k is the k-th present step of the cut series; keep those in the window.
        out = np.full(
            (window.size, window.size, window.num_t, stored.shape[-1]),
            modalities.MISSING_VALUE,
            dtype=self.dtype,
        )
        steps = np.flatnonzero(present)
        inside = np.flatnonzero((steps >= window.start_t) & (steps < window.start_t + window.num_t))
        if inside.size:
            # The window's stored steps are consecutive: read just that block.
            pixels = stored[rows, cols, inside[0] : inside[-1] + 1]
            out[:, :, steps[inside] - window.start_t] = pixels
        return out
