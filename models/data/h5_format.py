"""The on-disk sample format: one HDF5 file per sample, as in the OlmoEarth pretraining data.

A dataset directory is named like the reference converter names it:

    <root>/h5py_data_w_missing_timesteps[_<compression>[_<level>][_shuffle]]_<tile>_x_<nsub>/
        <sorted modality names joined by "_">/<num_samples>/
            sample_<i>.h5  sample_metadata.csv  latlon_distribution.npy
            compression_settings.json

Inside `sample_<i>.h5`:
    timestamps                    [T, 3] int: (day of month, month 0..11, year)
    latlon                        [2] float32: (lat, lon) in degrees
    <multitemporal modality>      [H, W, T_present, C]: only the timesteps that have data
    <static map>                  [H, W, 1, C]
    missing_timesteps_masks/<m>   [T] bool per multitemporal modality: True where timestep t of
                                  `timestamps` is stored (the name is the reference's; the
                                  values mean *present*)

Static maps are written `[H, W, 1, C]` because that is what the reference converter writes
(its rasters are read as `[T, C, H, W]` with T = 1 and rearranged to `h w t c`) and what its
loader stacks into `[B, H, W, 1, C]`; the reader also accepts `[H, W, C]`.
A modality absent from a sample is simply not in the file.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from models.config.configurable import Configurable
from models.modalities import modalities

H5_FOLDER = "h5py_data_w_missing_timesteps"
SAMPLE_FILE_PATTERN = "sample_{index}.h5"
METADATA_FILENAME = "sample_metadata.csv"
LATLON_DISTRIBUTION_FILENAME = "latlon_distribution.npy"
COMPRESSION_SETTINGS_FILENAME = "compression_settings.json"
MISSING_TIMESTEPS_GROUP = "missing_timesteps_masks"
TIMESTAMPS = "timestamps"
LATLON = "latlon"

COMPRESSION_ALGORITHMS = (None, "gzip", "zstd")


class SampleError(ValueError):
    """A sample file that cannot be used; the message names the file and the field."""

    def __init__(self, path: str | os.PathLike[str], field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.path}: field {field!r}: {problem}")


@dataclasses.dataclass(kw_only=True)
class CompressionConfig(Configurable[dict[str, Any]]):
    """How arrays are compressed inside each sample file.

    Attributes:
        algorithm: None (raw), "gzip" (built into h5py) or "zstd" (through the `hdf5plugin`
            package, which our lock pins; the official OlmoEarth data is zstd level 3).
        level: gzip 0..9 or zstd 1..22; None uses the library default.
        shuffle: byte-shuffle filter before gzip (ignored by the reference for zstd).
    """

    algorithm: str | None = None
    level: int | None = None
    shuffle: bool | None = None

    def __post_init__(self) -> None:
        if self.algorithm not in COMPRESSION_ALGORITHMS:
            raise ValueError(
                f"CompressionConfig.algorithm is {self.algorithm!r}; "
                f"allowed: {list(COMPRESSION_ALGORITHMS)}"
            )
        if self.algorithm is None and (self.level is not None or self.shuffle is not None):
            raise ValueError("CompressionConfig.level/shuffle need an algorithm; it is None")
        if self.algorithm == "gzip" and self.level is not None and not 0 <= self.level <= 9:
            raise ValueError(f"CompressionConfig.level is {self.level}; gzip allows 0..9")
        if self.algorithm == "zstd":
            if self.level is not None and not 1 <= self.level <= 22:
                raise ValueError(f"CompressionConfig.level is {self.level}; zstd allows 1..22")
            _import_hdf5plugin("write zstd-compressed samples")

    @property
    def folder_suffix(self) -> str:
        """The part of the dataset folder name that records compression, as the reference."""
        suffix = ""
        if self.algorithm is not None:
            suffix = f"_{self.algorithm}"
        if self.level is not None:
            suffix += f"_{self.level}"
        if self.shuffle is not None:
            suffix += "_shuffle"
        return suffix

    def settings(self) -> dict[str, Any]:
        """The content of compression_settings.json."""
        return {
            "compression": self.algorithm,
            "compression_opts": self.level,
            "shuffle": self.shuffle,
        }

    def build(self, shape: tuple[int, ...]) -> dict[str, Any]:
        """Keyword arguments for `h5py.Group.create_dataset` of an array of `shape`: what
        this config makes is the compression of one array (its filter and chunking)."""
        if self.algorithm is None:
            return {}
        # One chunk per array, as the reference: a sample is always read whole.
        kwargs: dict[str, Any] = {"chunks": shape if all(shape) else None}
        if self.algorithm == "gzip":
            kwargs["compression"] = "gzip"
            if self.level is not None:
                kwargs["compression_opts"] = self.level
            if self.shuffle is not None:
                kwargs["shuffle"] = self.shuffle
        else:
            hdf5plugin = _import_hdf5plugin("write zstd-compressed samples")
            clevel = 3 if self.level is None else self.level
            kwargs["compression"] = hdf5plugin.Zstd(clevel=clevel)
        return kwargs


def _import_hdf5plugin(purpose: str) -> Any:
    try:
        import hdf5plugin  # pinned in our lock; loaded only when zstd is used
    except ImportError as error:
        raise ImportError(
            f"to {purpose} install hdf5plugin (pinned in third_party/python/requirements.lock; "
            "elsewhere: pip install hdf5plugin), or use CompressionConfig(algorithm='gzip')"
        ) from error
    return hdf5plugin


@functools.cache
def _register_optional_filters() -> bool:
    """Makes zstd-compressed files readable when hdf5plugin is installed (once per process)."""
    try:
        import hdf5plugin  # noqa: F401 (registers the zstd filter)
    except ImportError:
        return False
    return True


@dataclasses.dataclass
class SampleRecord:
    """One sample exactly as stored (see the module docstring for layouts).

    Attributes:
        modalities: per-modality arrays in their stored dtype; multitemporal ones hold only
            the present timesteps `[H, W, T_present, C]`, static maps `[H, W, 1, C]`.
        timestamps: `[T, 3]` (day, month 0..11, year) of the full time series.
        latlon: `[2]` degrees.
        present_timesteps: per multitemporal modality a `[T]` bool array, True where the
            timestep is stored. A multitemporal modality without an entry has all T steps.
    """

    modalities: dict[str, np.ndarray]
    timestamps: np.ndarray
    latlon: np.ndarray
    present_timesteps: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    @property
    def num_timesteps(self) -> int:
        return int(self.timestamps.shape[0])


def dataset_dir(
    root: str | os.PathLike[str],
    modality_names: Iterable[str],
    num_samples: int,
    compression: CompressionConfig | None = None,
    tile_size: int = 256,
    num_subtiles: int = 1,
) -> Path:
    """The directory that holds a dataset's sample files, named as by the reference converter.

    Args:
        root: the tile path the dataset belongs to.
        modality_names: the modalities the dataset supports (sorted into the name).
        num_samples: number of sample files.
        compression: recorded in the folder name.
        tile_size: pixels per side of a sample.
        num_subtiles: samples cut from one source tile (reference: (256 / tile_size) ** 2).
    """
    compression = compression or CompressionConfig()
    folder = f"{H5_FOLDER}{compression.folder_suffix}_{tile_size}_x_{num_subtiles}"
    return Path(root) / folder / "_".join(sorted(modality_names)) / str(num_samples)


def sample_path(h5_dir: str | os.PathLike[str], index: int) -> Path:
    return Path(h5_dir) / SAMPLE_FILE_PATTERN.format(index=index)


def _check_record(record: SampleRecord) -> None:
    """Writer-side checks: a file that the reader would reject is never written."""
    if record.timestamps.ndim != 2 or record.timestamps.shape[1] != 3:
        raise ValueError(f"timestamps has shape {record.timestamps.shape}; expected [T, 3]")
    if record.latlon.shape != (2,):
        raise ValueError(f"latlon has shape {record.latlon.shape}; expected [2]")
    for name, array in record.modalities.items():
        spec = modalities.get(name)
        if not spec.is_spatial:
            raise ValueError(f"{name} is not a spatial modality; latlon is a separate field")
        if array.ndim != 4 or array.shape[-1] != spec.num_bands:
            raise ValueError(
                f"{name} has shape {array.shape}; expected [H, W, T, {spec.num_bands}]"
            )
        if spec.is_multitemporal:
            present = record.present_timesteps.get(name)
            expected = record.num_timesteps if present is None else int(np.sum(present))
            if present is not None and present.shape != (record.num_timesteps,):
                raise ValueError(
                    f"present_timesteps[{name!r}] has shape {present.shape}; "
                    f"expected [{record.num_timesteps}]"
                )
            if array.shape[2] != expected:
                raise ValueError(f"{name} stores {array.shape[2]} timesteps; expected {expected}")
        elif array.shape[2] != 1:
            raise ValueError(f"{name} is a static map; expected [H, W, 1, C], got {array.shape}")


def write_sample(
    path: str | os.PathLike[str],
    record: SampleRecord,
    compression: CompressionConfig | None = None,
) -> None:
    """Writes one sample file (see the module docstring for the layout)."""
    _check_record(record)
    compression = compression or CompressionConfig()
    items = {TIMESTAMPS: record.timestamps, LATLON: record.latlon.astype(np.float32)}
    items.update(
        {name: record.modalities[name] for name in modalities.canonical_order(record.modalities)}
    )
    # track_times=False keeps files byte-identical for identical content.
    with h5py.File(path, "w", track_order=True) as h5:
        for name, array in items.items():
            array = np.ascontiguousarray(array)
            h5.create_dataset(name, data=array, track_times=False, **compression.build(array.shape))
        if record.present_timesteps:
            group = h5.create_group(MISSING_TIMESTEPS_GROUP, track_order=True)
            for name in modalities.canonical_order(record.present_timesteps):
                group.create_dataset(
                    name,
                    data=np.asarray(record.present_timesteps[name], dtype=bool),
                    track_times=False,
                )


class StoredArray:
    """A modality array still in its open file: shape and dtype at once, values when sliced.

    Reading only the crop window of an instance is much cheaper than reading the whole array:
    on the official 128 px zstd files a whole read cost ~2x the decompression alone (~20 ms vs
    ~11 ms per sample for S2, Landsat, S1 and OSM). Static maps stored `[H, W, C]` look like
    `[H, W, 1, C]`, as `read_sample` returns them. Valid while the file is open (`open_sample`).
    """

    def __init__(self, dataset: h5py.Dataset, path: Any, field: str, add_time_axis: bool):
        self._dataset = dataset
        self._path = path
        self._field = field
        self._add_time_axis = add_time_axis
        shape = tuple(dataset.shape)
        self.shape = shape[:2] + (1,) + shape[2:] if add_time_axis else shape
        self.dtype = dataset.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        """Reads the selection (a tuple of slices over `shape`) from the file."""
        key = key if isinstance(key, tuple) else (key,)
        if self._add_time_axis and len(key) > 2:
            key = key[:2] + key[3:]  # the stored array has no time axis
        try:
            values = np.asarray(self._dataset[key])
        except (OSError, KeyError, ValueError) as error:
            raise SampleError(self._path, self._field, f"cannot be read ({error})") from error
        if self._add_time_axis and values.ndim == 3:
            values = values[:, :, None, :]
        return values

    def read(self) -> np.ndarray:
        """The whole array."""
        return self[()]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self.read()
        return values if dtype is None else values.astype(dtype, copy=False)


@contextlib.contextmanager
def open_sample(
    path: str | os.PathLike[str], modality_names: Iterable[str] | None = None
) -> Iterator[SampleRecord]:
    """Opens one sample file; inside the `with`, the record's modality arrays are
    `StoredArray`s (read on slicing), the rest (timestamps, lat/lon, timestep masks) is read.

    Raises:
        SampleError: the file is missing or not readable HDF5 (field "file"), or a field is
            malformed. Content checks (band counts, NaN) belong to the dataset.
    """
    _register_optional_filters()
    wanted = None if modality_names is None else set(modality_names)
    try:
        h5 = h5py.File(path, "r")
    except (OSError, KeyError, ValueError) as error:
        raise SampleError(path, "file", f"not a readable HDF5 sample ({error})") from error
    with h5:
        try:
            record = _read_header(h5, path, wanted)
        except SampleError:
            raise
        except (OSError, KeyError, ValueError) as error:
            raise SampleError(path, "file", f"not a readable HDF5 sample ({error})") from error
        yield record


def _read_header(h5: h5py.File, path: Any, wanted: set[str] | None) -> SampleRecord:
    if TIMESTAMPS not in h5:
        raise SampleError(path, TIMESTAMPS, "missing from the file")
    arrays: dict[str, StoredArray] = {}
    for name in h5:
        if name in (TIMESTAMPS, LATLON, MISSING_TIMESTEPS_GROUP):
            continue
        if wanted is not None and name not in wanted:
            continue
        if name not in modalities.MODALITIES:
            continue  # modalities we have no registry entry for (era5, naip, ...)
        dataset = h5[name]
        if not isinstance(dataset, h5py.Dataset):
            raise SampleError(path, name, "is not an array")
        static_3d = dataset.ndim == 3 and not modalities.get(name).is_multitemporal
        arrays[name] = StoredArray(dataset, path, name, add_time_axis=static_3d)
    present: dict[str, np.ndarray] = {}
    if MISSING_TIMESTEPS_GROUP in h5:
        group = h5[MISSING_TIMESTEPS_GROUP]
        for name in group:
            if name in arrays:
                field = f"{MISSING_TIMESTEPS_GROUP}/{name}"
                present[name] = _read_array(group, name, path, field).astype(bool)
    timestamps = _read_array(h5, TIMESTAMPS, path)
    latlon = (
        _read_array(h5, LATLON, path)
        if LATLON in h5
        else np.full((2,), modalities.MISSING_VALUE, np.float32)
    )
    return SampleRecord(arrays, timestamps, latlon, present)  # type: ignore[arg-type]


def read_sample(
    path: str | os.PathLike[str], modality_names: Iterable[str] | None = None
) -> SampleRecord:
    """Reads one sample file whole; `modality_names` limits which modalities are loaded.

    Raises:
        SampleError: the file is missing or not readable HDF5 (field "file"), or a field is
            malformed. Content checks (band counts, NaN) belong to the dataset.
    """
    with open_sample(path, modality_names) as record:
        record.modalities = {name: array.read() for name, array in record.modalities.items()}
    return record


def _read_array(group: h5py.Group, name: str, path: Any, field: str | None = None) -> np.ndarray:
    try:
        return np.asarray(group[name][()])
    except (OSError, KeyError, ValueError) as error:
        raise SampleError(path, field or name, f"cannot be read ({error})") from error


def write_metadata(
    h5_dir: str | os.PathLike[str],
    modality_names: Sequence[str],
    present: Sequence[Iterable[str]],
    extra_columns: Mapping[str, Sequence[Any]] | None = None,
) -> Path:
    """Writes sample_metadata.csv: `sample_index`, one 0/1 column per modality, extras.

    Args:
        h5_dir: the dataset directory.
        modality_names: the dataset's supported modalities (one column each, in this order).
        present: for each sample, the modalities it has.
        extra_columns: further per-sample columns (e.g. a label), appended after the
            reference's columns so the reference loader, which reads modality columns by
            name, is unaffected.
    """
    extra_columns = dict(extra_columns or {})
    for name, values in extra_columns.items():
        if len(values) != len(present):
            raise ValueError(
                f"extra column {name!r} has {len(values)} rows; expected {len(present)}"
            )
    path = Path(h5_dir) / METADATA_FILENAME
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_index", *modality_names, *extra_columns])
        for index, names in enumerate(present):
            have = set(names)
            flags = [1 if name in have else 0 for name in modality_names]
            writer.writerow([index, *flags, *(values[index] for values in extra_columns.values())])
    return path


def read_metadata(h5_dir: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of sample_metadata.csv as dicts of strings, in sample order."""
    path = Path(h5_dir) / METADATA_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a dataset directory")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class H5DatasetWriter:
    """Writes a dataset directory: sample files plus the reference's side files.

    Usage:
        writer = H5DatasetWriter(root, modality_names, num_samples, compression, tile_size=64)
        for i, record in enumerate(records):
            writer.write(i, record, extra={"majority_worldcover_class": 40})
        writer.finish()
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        modality_names: Sequence[str],
        num_samples: int,
        compression: CompressionConfig | None = None,
        tile_size: int = 256,
        num_subtiles: int = 1,
    ) -> None:
        self.modality_names = tuple(modalities.canonical_order(modality_names))
        self.num_samples = num_samples
        self.compression = compression or CompressionConfig()
        self.h5_dir = dataset_dir(
            root, self.modality_names, num_samples, self.compression, tile_size, num_subtiles
        )
        self.h5_dir.mkdir(parents=True, exist_ok=True)
        self._present: list[list[str] | None] = [None] * num_samples
        self._latlons = np.full((num_samples, 2), np.nan, dtype=np.float32)
        self._extra: dict[str, list[Any]] = {}

    def write(
        self, index: int, record: SampleRecord, extra: Mapping[str, Any] | None = None
    ) -> Path:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"sample index {index} outside 0..{self.num_samples - 1}")
        unknown = set(record.modalities) - set(self.modality_names)
        if unknown:
            raise ValueError(f"sample {index} has modalities {sorted(unknown)} the dataset lacks")
        path = sample_path(self.h5_dir, index)
        write_sample(path, record, self.compression)
        self._present[index] = list(record.modalities)
        self._latlons[index] = record.latlon
        for key, value in (extra or {}).items():
            self._extra.setdefault(key, [None] * self.num_samples)[index] = value
        return path

    def finish(self) -> Path:
        """Writes metadata, lat/lon distribution and compression settings; returns the dir."""
        missing = [i for i, names in enumerate(self._present) if names is None]
        if missing:
            raise ValueError(f"samples {missing[:10]} were never written")
        write_metadata(self.h5_dir, self.modality_names, self._present, self._extra)  # type: ignore[arg-type]
        np.save(self.h5_dir / LATLON_DISTRIBUTION_FILENAME, self._latlons)
        with open(self.h5_dir / COMPRESSION_SETTINGS_FILENAME, "w") as handle:
            json.dump(self.compression.settings(), handle, indent=2)
        return self.h5_dir
