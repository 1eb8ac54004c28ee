"""Land cover on held-out synthetic tiles: tile classification and per-patch segmentation.

Data: tiles of the synthetic Earth (models/data/synthetic.py) drawn with another seed than
the pretraining data (seed 1; pretraining uses seed 0), so no evaluated tile was seen in
pretraining. They are generated on first use into the synthetic cache, or read from `h5_dir`.

Labels come from the generator, never from the encoder's input:
    tile label    the tile's majority WorldCover class (the `majority_worldcover_class`
                  column of sample_metadata.csv; computed from the map when absent)
    patch labels  the majority WorldCover class of each P x P patch (ties: the smaller code,
                  the generator's rule), read from the worldcover map in the H5 file
The encoder sees S2, S1 and Landsat only (models/eval/embeddings.py refuses maps).

Each tile is used whole (patches_per_side = tile size / P). In time, every tile keeps the same
positions of its year, `timesteps` (default 0, 3, 6, 9: one month per season). Tiles start
their year in different months and the season changes the spectra (a crop field in winter
looks like bare soil), so a random window of months would make tiles look alike for their
dates rather than their land cover; four months spread over the year show every tile in all
four seasons. At P = 8 on 64 px tiles that is 64 patches x 6 band sets x 4 = 1536 tokens per
tile. (`token_budget` instead keeps the dataset's budgeted random window, as in training.)

The first `train_fraction` of the tiles train kNN and the probes; the rest are scored: 128 and
128 by default, so one test tile moves accuracy by 0.8%. Tiles are drawn independently, so
this split is as good as a random one and needs no seed.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from models.config.configurable import Configurable
from models.data import h5_format, synthetic
from models.data.dataset import DatasetConfig, DatasetItem, GetItemArgs
from models.eval.embeddings import DEFAULT_INPUT_MODALITIES, check_input_modalities
from models.eval.tasks import LazyItems, TaskData, TaskSplit
from models.modalities import modalities

logger = logging.getLogger(__name__)

WORLDCOVER_NAMES = (
    "tree cover",
    "shrubland",
    "grassland",
    "cropland",
    "built-up",
    "bare / sparse vegetation",
    "snow and ice",
    "permanent water bodies",
    "herbaceous wetland",
    "mangroves",
    "moss and lichen",
)
"""Names of modalities.WORLDCOVER_CLASSES, in the same order (class index = position)."""

HELD_OUT_SEED = 1
"""Seed of the held-out tiles; the pretraining default dataset uses synthetic.DEFAULT_SEED."""

_CODE_TO_INDEX = {code: index for index, code in enumerate(modalities.WORLDCOVER_CLASSES)}


def worldcover_indices(codes: np.ndarray) -> np.ndarray:
    """WorldCover codes (10, 20, ..., 100) -> class indices 0..10; other values raise."""
    lookup = np.full(256, -1, dtype=np.int64)
    for code, index in _CODE_TO_INDEX.items():
        lookup[code] = index
    codes = np.asarray(codes).astype(np.int64)
    if codes.size and (codes.min() < 0 or codes.max() > 255 or (lookup[codes] < 0).any()):
        bad = sorted(set(np.unique(codes).tolist()) - set(_CODE_TO_INDEX))
        raise ValueError(
            f"not WorldCover codes: {bad[:10]}; valid codes are {modalities.WORLDCOVER_CLASSES}"
        )
    return lookup[codes]


def patch_majority(class_map: np.ndarray, patch_size: int, num_classes: int) -> np.ndarray:
    """`[H, W]` class indices -> `[H / P, W / P]` most frequent class per patch (ties: the
    smaller index, which is the smaller WorldCover code)."""
    height, width = class_map.shape
    if height % patch_size or width % patch_size:
        raise ValueError(f"a {height}x{width} map does not split into {patch_size}px patches")
    blocks = class_map.reshape(height // patch_size, patch_size, width // patch_size, patch_size)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(height // patch_size, width // patch_size, -1)
    counts = (blocks[..., None] == np.arange(num_classes)).sum(axis=2)
    return counts.argmax(axis=-1)  # argmax takes the first maximum: the smaller class


@dataclasses.dataclass(kw_only=True)
class LandCoverTaskConfig(Configurable["LandCoverTask"]):
    """Configuration of the synthetic land-cover task.

    Attributes:
        name: metric prefix (`eval/<name>/...`).
        h5_dir: a synthetic dataset directory (with sample_metadata.csv); None generates
            (once, cached) `num_samples` tiles with `seed`.
        num_samples: tiles generated when h5_dir is None.
        seed: generator seed when h5_dir is None; keep it != 0 (the pretraining tiles).
        max_samples: use at most this many tiles of the directory; None: all.
        train_fraction: share of the tiles used for training, in (0, 1).
        patch_size: P; must divide the tile size.
        timesteps: positions in each tile's (up to 12-step) series to keep, the same for every
            tile; None: use token_budget.
        token_budget: with timesteps None, the dataset's budgeted random time window (as in
            training); None with timesteps None keeps all 12 steps.
        segmentation: also score the per-patch linear probe.
        input_modalities: what the encoder sees (observations only).
    """

    name: str = "landcover"
    h5_dir: str | None = None
    num_samples: int = 256
    seed: int = HELD_OUT_SEED
    max_samples: int | None = None
    train_fraction: float = 0.5
    patch_size: int = 8
    timesteps: tuple[int, ...] | None = (0, 3, 6, 9)
    token_budget: int | None = None
    segmentation: bool = True
    input_modalities: tuple[str, ...] = DEFAULT_INPUT_MODALITIES

    def __post_init__(self) -> None:
        owner = type(self).__name__
        if not self.name:
            raise ValueError(f"{owner}.name must be non-empty")
        if self.num_samples < 2:
            raise ValueError(f"{owner}.num_samples must be >= 2, got {self.num_samples}")
        if self.max_samples is not None and self.max_samples < 2:
            raise ValueError(f"{owner}.max_samples must be >= 2 or None, got {self.max_samples}")
        if not 0 < self.train_fraction < 1:
            raise ValueError(f"{owner}.train_fraction must be in (0, 1), got {self.train_fraction}")
        if self.patch_size < 1:
            raise ValueError(f"{owner}.patch_size must be >= 1, got {self.patch_size}")
        self.input_modalities = check_input_modalities(self.input_modalities)
        if self.timesteps is not None:
            self.timesteps = tuple(int(t) for t in self.timesteps)
            steps = self.timesteps
            if (
                not steps
                or list(steps) != sorted(set(steps))
                or not (0 <= steps[0] and steps[-1] < modalities.MAX_TIMESTEPS)
            ):
                raise ValueError(
                    f"{owner}.timesteps must be increasing positions in [0, "
                    f"{modalities.MAX_TIMESTEPS}), got {self.timesteps}"
                )
            if self.token_budget is not None:
                raise ValueError(
                    f"{owner}: set timesteps or token_budget, not both (timesteps="
                    f"{self.timesteps}, token_budget={self.token_budget})"
                )

    def build(self) -> LandCoverTask:
        return LandCoverTask(self)


class LandCoverTask:
    """Loads the tiles and their labels once (see the module docstring)."""

    def __init__(self, config: LandCoverTaskConfig) -> None:
        self.config = config
        self.name = config.name

    def data_dir(self) -> Path:
        if self.config.h5_dir is not None:
            return Path(self.config.h5_dir)
        return synthetic.ensure_default_dataset(
            num_samples=self.config.num_samples, seed=self.config.seed
        )

    def load(self) -> TaskData:
        config = self.config
        h5_dir = self.data_dir()
        dataset = DatasetConfig(
            h5_dir=str(h5_dir), training_modalities=config.input_modalities
        ).build()
        size = dataset.image_size
        if size % config.patch_size:
            raise ValueError(
                f"{config.name}: tiles are {size}px, not a multiple of patch_size "
                f"{config.patch_size}; a tile must split into whole patches"
            )
        per_side = size // config.patch_size
        majority = _majority_column(h5_dir)
        count = (
            len(dataset) if config.max_samples is None else min(len(dataset), config.max_samples)
        )
        labels, patch_labels = [], []
        num_classes = len(modalities.WORLDCOVER_CLASSES)
        budget = None if config.timesteps is not None else config.token_budget

        def read(index: int) -> DatasetItem:
            # crop_seed fixes the time window per tile; the whole tile is the spatial window.
            item = dataset[GetItemArgs(index, config.patch_size, per_side, budget, index)]
            if config.timesteps is not None:
                item = _select_timesteps(item, config.timesteps)
            return item

        first = read(0)  # fails now, not at the first evaluation, if the data cannot be read
        for index in range(count):
            sample_id = int(dataset.sample_indices[index])
            path = dataset.sample_path_of(sample_id)
            record = h5_format.read_sample(path, ("worldcover",))
            if "worldcover" not in record.modalities:
                raise ValueError(f"{path} has no worldcover map: no labels for it")
            class_map = worldcover_indices(record.modalities["worldcover"][:, :, 0, 0])
            code = majority.get(sample_id)
            if code is None:
                tile_class = int(np.bincount(class_map.ravel(), minlength=num_classes).argmax())
            else:
                tile_class = int(worldcover_indices(np.asarray([code]))[0])
            labels.append(tile_class)
            patch_labels.append(patch_majority(class_map, config.patch_size, num_classes))
        num_train = max(1, min(count - 1, round(count * config.train_fraction)))
        label_tensor = torch.tensor(labels, dtype=torch.long)
        patch_tensor = torch.from_numpy(np.stack(patch_labels)).long()
        logger.info(
            "%s: %d tiles from %s (%d train / %d test), %d px, patch %d, T = %d",
            config.name,
            count,
            h5_dir,
            num_train,
            count - num_train,
            size,
            config.patch_size,
            first.timestamps.shape[0],
        )
        return TaskData(
            name=config.name,
            train=TaskSplit(
                LazyItems(read, range(num_train)),
                label_tensor[:num_train],
                patch_tensor[:num_train] if config.segmentation else None,
            ),
            test=TaskSplit(
                LazyItems(read, range(num_train, count)),
                label_tensor[num_train:],
                patch_tensor[num_train:] if config.segmentation else None,
            ),
            num_classes=num_classes,
            class_names=WORLDCOVER_NAMES,
            patch_size=config.patch_size,
        )


def _select_timesteps(item: DatasetItem, steps: tuple[int, ...]) -> DatasetItem:
    """The item at time positions `steps` of its series (multitemporal data and timestamps)."""
    length = item.timestamps.shape[0]
    if steps[-1] >= length:
        raise ValueError(f"{item.source} has {length} timesteps; timesteps asks for {steps}")
    index = list(steps)
    data = {
        name: values[:, :, index] if modalities.get(name).is_spacetime else values
        for name, values in item.data.items()
    }
    return dataclasses.replace(item, data=data, timestamps=item.timestamps[index])


def _majority_column(h5_dir: Path) -> dict[int, int]:
    """sample id -> majority WorldCover code, from sample_metadata.csv (empty if absent)."""
    rows = h5_format.read_metadata(h5_dir)
    column = synthetic.MAJORITY_CLASS_COLUMN
    return {
        int(row["sample_index"]): int(row[column])
        for row in rows
        if row.get(column) not in (None, "")
    }
