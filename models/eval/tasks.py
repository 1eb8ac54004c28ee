"""What an evaluation task hands the evaluator: labelled items, split into train and test.

A task config's `build()` gives an `EvalTask`; `EvalTask.load()` reads its labels once and
returns `TaskData`. The evaluator embeds the items with the frozen encoder, then scores kNN
and a linear probe on the sample labels and, when the task has them, a per-patch linear probe
on the patch labels.

Items are read when they are embedded (`LazyItems`), not kept: 256 synthetic tiles of 4
timesteps hold ~400 MB of float32 inputs, and a GEO-Bench split can hold gigabytes, while
re-reading them costs a few seconds per evaluation against minutes of encoding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol, overload

from torch import Tensor

from models.data.dataset import DatasetItem


class LazyItems(Sequence[DatasetItem]):
    """A sequence of items read on access: `read(key)` for each of `keys`."""

    def __init__(self, read: Callable[[int], DatasetItem], keys: Sequence[int]) -> None:
        self.read = read
        self.keys = list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> DatasetItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[DatasetItem]: ...

    def __getitem__(self, index: int | slice) -> DatasetItem | list[DatasetItem]:
        if isinstance(index, slice):
            return [self.read(key) for key in self.keys[index]]
        return self.read(self.keys[index])


@dataclasses.dataclass
class TaskSplit:
    """Items and their labels.

    Attributes:
        items: model inputs; spatial data [H, W, T, C] per modality, one shape per split.
        labels: [N] class index per item.
        patch_labels: [N, h, w] class index per patch (IGNORE_LABEL where unscored), or None
            when the task has no dense labels.
    """

    items: Sequence[DatasetItem]
    labels: Tensor
    patch_labels: Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.items) != self.labels.shape[0]:
            raise ValueError(f"{len(self.items)} items but {self.labels.shape[0]} labels")
        if self.patch_labels is not None and self.patch_labels.shape[0] != len(self.items):
            raise ValueError(
                f"{len(self.items)} items but {self.patch_labels.shape[0]} patch label maps"
            )

    def __len__(self) -> int:
        return len(self.items)


@dataclasses.dataclass
class TaskData:
    """A loaded task.

    Attributes:
        name: metric prefix, `eval/<name>/...`.
        train: what kNN searches and the probes fit.
        test: what is scored.
        num_classes: K; labels are in [0, K).
        class_names: K names, for reports.
        patch_size: P the encoder runs at for this task.
    """

    name: str
    train: TaskSplit
    test: TaskSplit
    num_classes: int
    class_names: tuple[str, ...]
    patch_size: int

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"task {self.name}: {len(self.class_names)} class names for "
                f"{self.num_classes} classes"
            )
        if len(self.train) == 0 or len(self.test) == 0:
            raise ValueError(
                f"task {self.name}: train ({len(self.train)}) and test ({len(self.test)}) "
                "splits both need samples"
            )


class EvalTask(Protocol):
    """What a task config builds."""

    name: str

    def load(self) -> TaskData: ...
