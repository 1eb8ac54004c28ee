"""GEO-Bench-style HDF5 classification data (the m-eurosat layout), for real benchmarks.

A GEO-Bench v1 classification dataset is one folder:
    <root>/<sample name>.hdf5          one file per sample, one 2-D dataset per band, named by
                                       band ("01 - Coastal aerosol", ..., "08A - Vegetation Red
                                       Edge", ..., "12 - SWIR"); a "_YYYY-MM-DD" suffix dates it
    <root>/band_stats.json             per band name: {"mean": ..., "std": ..., ...}
    <root>/<partition>_partition.json  {"train": [names], "valid": [names], "test": [names]};
                                       "default" is the full set, "0.01x_train" etc. are the
                                       low-label partitions

The label is read, in this order, from: an integer HDF5 attribute `label`; the `pickle`
attribute GEO-Bench writes (a Python-literal string of a pickled dict whose "label" entry is
the class index). That pickle also holds GEO-Bench's own classes (band infos, transforms); it
is read with `RestrictedUnpickler`, which never imports or calls anything from the file:
unknown classes become inert placeholders and only dates, ordered dicts and plain numpy
arrays/scalars of non-object dtypes are rebuilt.

Sentinel-2 bands map to our `sentinel2_l2a` storage bands by their number ("08A" -> B8A,
"02" -> B02); bands we do not model (B10 cirrus) are dropped. A sample becomes one timestep
`[H, W, 1, 12]`, centre-cropped to a multiple of the patch size. Normalization:
    "dataset"   band_stats.json mean and std with the pretraining rule, [mean - 2 std,
                mean + 2 std] -> [0, 1] (models/data/normalize.py, COMPUTED)
    "pretrain"  our pretraining statistics (models/data/normalize.py) on the raw values
"""

from __future__ import annotations

import ast
import dataclasses
import datetime
import io
import json
import logging
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from models.config.configurable import Configurable
from models.data.dataset import DatasetItem
from models.data.normalize import NormalizerConfig
from models.eval.tasks import LazyItems, TaskData, TaskSplit
from models.modalities import modalities

logger = logging.getLogger(__name__)

NORMALIZATIONS = ("dataset", "pretrain")
SPLITS = ("train", "valid", "test")
STD_MULTIPLIER = 2.0
_DATE_SUFFIX = re.compile(r"_(\d{4})-(\d{2})-(\d{2})$")
_BAND_NUMBER = re.compile(r"^\s*(\d{1,2}A?)\b")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles metadata without running code from the file (see the module docstring)."""

    _ALLOWED = {
        ("datetime", "date"): datetime.date,
        ("datetime", "datetime"): datetime.datetime,
        ("datetime", "timedelta"): datetime.timedelta,
        ("datetime", "timezone"): datetime.timezone,
        ("collections", "OrderedDict"): OrderedDict,
    }

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._ALLOWED:
            return self._ALLOWED[key]
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
            if name == "dtype":
                return _plain_dtype
            if name == "scalar":
                return _plain_scalar
            if name == "_reconstruct":
                return _plain_array
            if name == "ndarray":
                return np.ndarray
        return _placeholder(module, name)


def _plain_dtype(*args: Any, **kwargs: Any) -> np.dtype:
    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject:  # numpy unpickles object arrays with pickle itself: refuse
        raise pickle.UnpicklingError("object dtypes are not allowed in GEO-Bench metadata")
    return dtype


def _plain_scalar(dtype: np.dtype, data: bytes) -> Any:
    return np.frombuffer(data, dtype=_plain_dtype(dtype), count=1)[0]


def _plain_array(subtype: type, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"ndarray subclass {subtype!r} is not allowed")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(dtype))


class Placeholder:
    """Stands in for a class the restricted unpickler does not rebuild; keeps its state."""

    _origin = ("", "")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{'.'.join(self._origin)} (not loaded)>"


_PLACEHOLDERS: dict[tuple[str, str], type] = {}


def _placeholder(module: str, name: str) -> type:
    key = (module, name)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = type(name, (Placeholder,), {"_origin": key})
    return _PLACEHOLDERS[key]


def read_pickled_attributes(text: str) -> Any:
    """GEO-Bench's `pickle` attribute (str of a bytes literal) -> the unpickled object."""
    raw = ast.literal_eval(text)
    if not isinstance(raw, bytes):
        raise ValueError("the 'pickle' attribute does not hold a bytes literal")
    return RestrictedUnpickler(io.BytesIO(raw)).load()


def read_label(h5: h5py.File) -> int:
    """The class index of one sample file (attribute `label`, else the pickled dict)."""
    if "label" in h5.attrs:
        return _as_label(h5.attrs["label"], h5.filename)
    if "pickle" in h5.attrs:
        text = h5.attrs["pickle"]
        attributes = read_pickled_attributes(text.decode() if isinstance(text, bytes) else text)
        if isinstance(attributes, dict) and "label" in attributes:
            return _as_label(attributes["label"], h5.filename)
    raise ValueError(
        f"{h5.filename}: no classification label (an integer 'label' attribute, or 'label' "
        "in the 'pickle' attribute); segmentation samples are not supported by this loader"
    )


def _as_label(value: Any, where: str) -> int:
    array = np.asarray(value)
    if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{where}: the label {value!r} is not one class index (multi-label?)")
    return int(array.reshape(()))


def sentinel2_band(name: str) -> str | None:
    """Our S2 band for a GEO-Bench band name ("08A - Vegetation Red Edge" -> "B8A"), or None
    for a band we do not model (B10 cirrus) or a name without a band number."""
    match = _BAND_NUMBER.match(_DATE_SUFFIX.sub("", name))
    if match is None:
        return None
    number = match.group(1)
    band = "B8A" if number.upper() in ("8A", "08A") else f"B{int(number):02d}"
    return band if band in modalities.SENTINEL2_L2A.storage_bands else None


@dataclasses.dataclass(kw_only=True)
class GeoBenchClassificationTaskConfig(Configurable["GeoBenchClassificationTask"]):
    """A GEO-Bench classification dataset as an evaluation task.

    Attributes:
        root: the dataset folder (sample .hdf5 files, band_stats.json, partitions).
        name: metric prefix (`eval/<name>/...`).
        partition: partition file stem: "default" reads default_partition.json,
            "0.01x_train" reads 0.01x_train_partition.json.
        train_split: split the kNN index and the probe are fit on.
        test_split: split that is scored ("valid" for model selection, "test" to report).
        patch_size: P (the reference evaluates at 4).
        normalization: one of NORMALIZATIONS.
        timestamp: (day, month 0..11, year) for undated samples (m-eurosat has no dates).
        max_samples_per_split: cap on samples per split (in partition order); None: all.
        num_classes: K; None takes the largest label + 1.
    """

    root: str
    name: str = "m-eurosat"
    partition: str = "default"
    train_split: str = "train"
    test_split: str = "test"
    patch_size: int = 4
    normalization: str = "dataset"
    timestamp: tuple[int, int, int] = (1, 6, 2020)
    max_samples_per_split: int | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for field in ("train_split", "test_split"):
            if getattr(self, field) not in SPLITS:
                raise ValueError(
                    f"{owner}.{field} must be one of {SPLITS}, got {getattr(self, field)!r}"
                )
        if self.train_split == self.test_split:
            raise ValueError(f"{owner}.train_split and test_split must differ")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"{owner}.normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}"
            )
        if self.patch_size < 1:
            raise ValueError(f"{owner}.patch_size must be >= 1, got {self.patch_size}")
        self.timestamp = tuple(int(v) for v in self.timestamp)
        if len(self.timestamp) != 3 or not 0 <= self.timestamp[1] <= 11:
            raise ValueError(
                f"{owner}.timestamp must be (day, month 0..11, year), got {self.timestamp}"
            )
        if self.max_samples_per_split is not None and self.max_samples_per_split < 1:
            raise ValueError(f"{owner}.max_samples_per_split must be >= 1 or None")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"{owner}.num_classes must be >= 2 or None, got {self.num_classes}")

    def build(self) -> GeoBenchClassificationTask:
        return GeoBenchClassificationTask(self)


class GeoBenchClassificationTask:
    """Reads a GEO-Bench classification folder (see the module docstring)."""

    def __init__(self, config: GeoBenchClassificationTaskConfig) -> None:
        self.config = config
        self.name = config.name
        self.root = Path(config.root)

    def partition(self) -> dict[str, list[str]]:
        path = self.root / f"{self.config.partition}_partition.json"
        if not path.is_file():
            found = sorted(p.name for p in self.root.glob("*_partition.json"))
            raise FileNotFoundError(f"{path} does not exist; partitions here: {found}")
        partition = json.loads(path.read_text())
        for split in (self.config.train_split, self.config.test_split):
            if split not in partition:
                raise ValueError(f"{path} has no {split!r} split; it has {sorted(partition)}")
        return partition

    def band_stats(self) -> dict[str, dict[str, float]]:
        path = self.root / "band_stats.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist; use normalization='pretrain' for data without it"
            )
        return json.loads(path.read_text())

    def _normalize(self, values: np.ndarray, band_names: list[str | None]) -> np.ndarray:
        """`[H, W, 1, 12]` raw values -> normalized, MISSING_VALUE left untouched."""
        missing = values == modalities.MISSING_VALUE
        if self.config.normalization == "pretrain":
            normalizer = NormalizerConfig().build()
            return normalizer.normalize("sentinel2_l2a", values, np.float32)
        low = np.zeros(values.shape[-1], np.float32)
        span = np.ones(values.shape[-1], np.float32)
        stats = self.band_stats()
        for channel, name in enumerate(band_names):
            if name is None:
                continue
            if name not in stats:
                raise ValueError(f"band_stats.json has no entry for band {name!r}")
            mean, std = float(stats[name]["mean"]), float(stats[name]["std"])
            low[channel] = mean - STD_MULTIPLIER * std
            span[channel] = max(2 * STD_MULTIPLIER * std, 1e-6)
        out = ((values - low) / span).astype(np.float32)
        out[missing] = modalities.MISSING_VALUE
        return out

    def read_sample(self, name: str, index: int) -> tuple[DatasetItem, int]:
        """One sample file -> (item with `sentinel2_l2a` [H', W', 1, 12], label)."""
        path = self.root / f"{name}.hdf5"
        storage = modalities.SENTINEL2_L2A.storage_bands
        channels: list[np.ndarray | None] = [None] * len(storage)
        source_names: list[str | None] = [None] * len(storage)
        date: datetime.date | None = None
        with h5py.File(path, "r") as h5:
            label = read_label(h5)
            stored = sorted(h5.keys())
            for dataset_name in stored:
                band = sentinel2_band(dataset_name)
                if band is None or not isinstance(h5[dataset_name], h5py.Dataset):
                    continue
                array = np.asarray(h5[dataset_name][()], dtype=np.float32)
                if array.ndim == 3 and array.shape[-1] == 1:
                    array = array[..., 0]
                if array.ndim != 2:
                    raise ValueError(f"{path}: band {dataset_name!r} has shape {array.shape}")
                channels[storage.index(band)] = array
                source_names[storage.index(band)] = _DATE_SUFFIX.sub("", dataset_name)
                dated = _DATE_SUFFIX.search(dataset_name)
                if dated is not None:
                    date = datetime.date(*(int(part) for part in dated.groups()))
        present = [array for array in channels if array is not None]
        if not present:
            raise ValueError(f"{path} has no Sentinel-2 band; its datasets are {stored}")
        shape = present[0].shape
        if any(array.shape != shape for array in present):
            raise ValueError(f"{path}: bands differ in size {sorted({a.shape for a in present})}")
        _check_band_sets(channels, path)
        filler = np.full(shape, modalities.MISSING_VALUE, np.float32)
        stacked = [array if array is not None else filler for array in channels]
        values = np.stack(stacked, axis=-1)[:, :, None, :]
        values = _centre_crop(values, self.config.patch_size)
        values = self._normalize(values, source_names)
        day, month, year = self.config.timestamp
        if date is not None:
            day, month, year = date.day, date.month - 1, date.year
        timestamps = np.asarray([[day, month, year]], dtype=np.int64)
        item = DatasetItem(
            index=index,
            source=str(path),
            patch_size=self.config.patch_size,
            data={"sentinel2_l2a": values},
            timestamps=timestamps,
        )
        return item, label

    def _split(self, names: list[str]) -> tuple[LazyItems, list[int]]:
        """The split's items (read when embedded) and labels (read now, from each file)."""
        limit = self.config.max_samples_per_split
        names = names[:limit] if limit else names
        labels = []
        for name in names:
            with h5py.File(self.root / f"{name}.hdf5", "r") as h5:
                labels.append(read_label(h5))
        if names:
            self.read_sample(names[0], 0)  # fails now, not at the first evaluation
        return LazyItems(
            lambda index: self.read_sample(names[index], index)[0], range(len(names))
        ), labels

    def load(self) -> TaskData:
        partition = self.partition()
        train_items, train_labels = self._split(partition[self.config.train_split])
        test_items, test_labels = self._split(partition[self.config.test_split])
        num_classes = self.config.num_classes or max(train_labels + test_labels) + 1
        if max(train_labels + test_labels) >= num_classes or min(train_labels + test_labels) < 0:
            raise ValueError(f"{self.root}: labels must be in [0, {num_classes})")
        logger.info(
            "%s: %d train / %d test samples from %s",
            self.name,
            len(train_items),
            len(test_items),
            self.root,
        )
        return TaskData(
            name=self.config.name,
            train=TaskSplit(train_items, torch.tensor(train_labels, dtype=torch.long)),
            test=TaskSplit(test_items, torch.tensor(test_labels, dtype=torch.long)),
            num_classes=num_classes,
            class_names=tuple(f"class {k}" for k in range(num_classes)),
            patch_size=self.config.patch_size,
        )


def _check_band_sets(channels: list[np.ndarray | None], path: Path) -> None:
    """A band set must be complete or wholly absent (then its tokens are MISSING)."""
    for band_set in modalities.SENTINEL2_L2A.band_sets:
        have = [
            channels[modalities.SENTINEL2_L2A.storage_bands.index(band)] is not None
            for band in band_set.bands
        ]
        if any(have) and not all(have):
            absent = [band for band, ok in zip(band_set.bands, have, strict=True) if not ok]
            raise ValueError(
                f"{path}: S2 band set {band_set.bands} is incomplete (missing {absent}); a band "
                "set must have all its bands or none"
            )


def _centre_crop(values: np.ndarray, patch_size: int) -> np.ndarray:
    """`[H, W, ...]` -> the centred `[H', W', ...]` with H', W' multiples of patch_size."""
    height, width = values.shape[:2]
    new_h, new_w = height - height % patch_size, width - width % patch_size
    if new_h == 0 or new_w == 0:
        raise ValueError(f"a {height}x{width} sample is smaller than one {patch_size}px patch")
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return values[top : top + new_h, left : left + new_w]
