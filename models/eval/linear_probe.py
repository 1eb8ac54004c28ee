"""A deterministic linear probe: one Linear(D, K) trained with AdamW on frozen embeddings.

Used for both tasks of the evaluator:
    classification  rows are samples:  features [N, D], labels [N]
    segmentation    rows are patches:  features [N, h, w, D], labels [N, h, w]; a batch holds
                    `batch_size` *images*, so an epoch has as many steps in both cases
Labels equal to IGNORE_LABEL (a patch with no visible token) are left out of the loss.

Schedule (the reference's evals/linear_probe.py): per step, linear warmup over the first 10%
of the epochs, then a half cosine from `lr` down to `min_lr` (1e-5).

Determinism: the weights start at zero (a zero probe predicts the uniform distribution, and
the cross-entropy gradient still separates the classes from the first step), and batches are
shuffled by a generator seeded with `seed`, so the same inputs give the same probe on every
run and every machine that computes the same float operations.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn

from models.config.configurable import Configurable
from models.eval.metrics import IGNORE_LABEL


@dataclasses.dataclass(kw_only=True)
class LinearProbeConfig(Configurable["LinearProbe"]):
    """Attributes:
    lr: peak learning rate of AdamW.
    min_lr: learning rate at the end of the cosine.
    weight_decay: AdamW weight decay (torch's default 0.01, as the reference).
    epochs: passes over the training rows (50, as the reference).
    batch_size: samples (classification) or images (segmentation) per step.
    warmup_fraction: share of the epochs spent in linear warmup, in [0, 1).
    standardize: z-score each feature with the training mean and std first. The probe stays
        linear (the affine map folds into the weights). On by default (the reference does not):
        the encoder's embeddings carry a large component shared by every sample (position and
        time encodings), which 50 AdamW epochs from zero do not get past. Measured on the
        synthetic land-cover task (128 + 128 tiles, nano encoder): per-patch probe accuracy
        0.27 -> 0.41 at random init and 0.21 -> 0.47 after 600 pretraining steps; tile probe
        0.27 -> 0.30 and 0.30 -> 0.33.
    seed: seeds the batch shuffling.
    """

    lr: float = 1e-2
    min_lr: float = 1e-5
    weight_decay: float = 0.01
    epochs: int = 50
    batch_size: int = 32
    warmup_fraction: float = 0.1
    standardize: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"LinearProbeConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"LinearProbeConfig.min_lr must be in [0, lr], got {self.min_lr}")
        if self.weight_decay < 0:
            raise ValueError(
                f"LinearProbeConfig.weight_decay must be >= 0, got {self.weight_decay}"
            )
        if self.epochs < 1:
            raise ValueError(f"LinearProbeConfig.epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"LinearProbeConfig.batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(
                f"LinearProbeConfig.warmup_fraction must be in [0, 1), got {self.warmup_fraction}"
            )

    def build(self, features: Tensor, labels: Tensor, num_classes: int) -> LinearProbe:
        """The probe these settings fit to `features` and `labels` (train_linear_probe).

        The data are arguments, like an optimizer's parameters: a config holds settings only.
        """
        return train_linear_probe(features, labels, num_classes, self)


def learning_rate(config: LinearProbeConfig, progress: float) -> float:
    """The rate at `progress` epochs (fractional) into training."""
    warmup = int(config.epochs * config.warmup_fraction)
    if progress < warmup:
        return config.lr * progress / warmup
    span = max(config.epochs - warmup, 1e-12)
    cosine = 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / span))
    return config.min_lr + (config.lr - config.min_lr) * cosine


@dataclasses.dataclass
class LinearProbe:
    """A trained probe: `predict(features)` applies the standardisation and the Linear."""

    linear: nn.Linear
    mean: Tensor
    std: Tensor

    @torch.no_grad()
    def logits(self, features: Tensor) -> Tensor:
        """`[..., D]` -> `[..., K]`."""
        return self.linear((features.float() - self.mean) / self.std)

    def predict(self, features: Tensor) -> Tensor:
        """`[..., D]` -> `[...]` class indices."""
        return self.logits(features).argmax(dim=-1)


def train_linear_probe(
    features: Tensor, labels: Tensor, num_classes: int, config: LinearProbeConfig | None = None
) -> LinearProbe:
    """Fits a probe on `features [N, ..., D]` and `labels [N, ...]` (see the module docstring).

    Args:
        features: per-sample `[N, D]` or per-patch `[N, h, w, D]` embeddings.
        labels: `[N]` or `[N, h, w]` class indices; IGNORE_LABEL entries are not trained on.
        num_classes: K, the probe's outputs.
        config: optimisation settings.
    """
    config = config or LinearProbeConfig()
    if features.shape[:-1] != labels.shape:
        raise ValueError(
            f"features {tuple(features.shape)} need one label per row; labels have shape "
            f"{tuple(labels.shape)}"
        )
    features = features.float()
    labels = labels.long()
    width = features.shape[-1]
    rows = features.reshape(-1, width)[labels.reshape(-1) != IGNORE_LABEL]
    if config.standardize and rows.shape[0] > 1:
        mean, std = rows.mean(dim=0), rows.std(dim=0).clamp_min(1e-6)
    else:
        mean, std = torch.zeros(width), torch.ones(width)

    linear = nn.Linear(width, num_classes)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    normalized = (features - mean) / std
    with torch.enable_grad():  # callers may hold no_grad (an evaluation usually does)
        _fit(linear, normalized, labels, config)
    linear.requires_grad_(False)
    return LinearProbe(linear=linear, mean=mean, std=std)


def _fit(linear: nn.Linear, normalized: Tensor, labels: Tensor, config: LinearProbeConfig) -> None:
    """AdamW over shuffled batches of whole samples (images, for per-patch labels)."""
    width = normalized.shape[-1]
    optimizer = torch.optim.AdamW(
        linear.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_LABEL)
    generator = torch.Generator().manual_seed(config.seed)
    num_samples = normalized.shape[0]
    steps_per_epoch = math.ceil(num_samples / config.batch_size)
    for epoch in range(config.epochs):
        order = torch.randperm(num_samples, generator=generator)
        for step in range(steps_per_epoch):
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch_labels = labels[batch].reshape(-1)
            if not (batch_labels != IGNORE_LABEL).any():
                continue
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, epoch + step / steps_per_epoch)
            logits = linear(normalized[batch].reshape(-1, width))
            loss = loss_fn(logits, batch_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
