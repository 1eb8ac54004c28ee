"""Classification and segmentation scores from integer predictions and labels.

All scores come from one confusion matrix `[K, K]` (row: true class, column: predicted), so
accuracy, macro-F1 and mIoU of one prediction always agree with each other. Conventions
follow the reference evaluation (olmoearth_pretrain/evals/metrics.py):

    accuracy   correct / counted entries (IGNORE_LABEL entries are not counted)
    macro_f1   mean per-class F1 over the classes that occur in the labels or the predictions
               (scikit-learn's f1_score(average="macro") convention for classification)
    miou       mean per-class IoU over the classes with a non-empty union
               (TP + FP + FN > 0), the reference's segmentation convention
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_LABEL = -1
"""Label of entries that are not scored (e.g. a patch with no visible token)."""


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """`[K, K]` int64 counts: entry (i, j) = entries of true class i predicted as j.

    Args:
        predictions: integer class indices, any shape.
        labels: integer class indices of the same shape; IGNORE_LABEL entries are skipped.
        num_classes: K; every counted label and prediction must be in [0, K).
    """
    if predictions.shape != labels.shape:
        raise ValueError(
            f"predictions {tuple(predictions.shape)} and labels {tuple(labels.shape)} "
            "must have the same shape"
        )
    keep = labels != IGNORE_LABEL
    truth = labels[keep].long()
    guess = predictions[keep].long()
    for name, values in (("labels", truth), ("predictions", guess)):
        if values.numel() and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} must be in [0, {num_classes}) (or {IGNORE_LABEL} in labels), got "
                f"values in [{int(values.min())}, {int(values.max())}]"
            )
    flat = truth * num_classes + guess
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _per_class(confusion: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    counts = confusion.to(torch.float64)
    true_positive = counts.diagonal()
    false_positive = counts.sum(dim=0) - true_positive
    false_negative = counts.sum(dim=1) - true_positive
    return true_positive, false_positive, false_negative


def accuracy(confusion: Tensor) -> float:
    total = confusion.sum()
    return float(confusion.diagonal().sum() / total) if total > 0 else 0.0


def macro_f1(confusion: Tensor) -> float:
    """Mean F1 over the classes present in the labels or the predictions."""
    tp, fp, fn = _per_class(confusion)
    present = (tp + fp + fn) > 0
    if not present.any():
        return 0.0
    # F1 = 2TP / (2TP + FP + FN): the harmonic mean of precision and recall, and 0 (not NaN)
    # for a class that was predicted but never true, as scikit-learn's zero_division=0.
    f1 = 2 * tp / (2 * tp + fp + fn).clamp_min(1e-12)
    return float(f1[present].mean())


def mean_iou(confusion: Tensor) -> float:
    """Mean IoU = TP / (TP + FP + FN) over the classes with a non-empty union."""
    tp, fp, fn = _per_class(confusion)
    union = tp + fp + fn
    present = union > 0
    if not present.any():
        return 0.0
    return float((tp[present] / union[present]).mean())


def classification_scores(
    predictions: Tensor, labels: Tensor, num_classes: int
) -> dict[str, float]:
    """accuracy and macro_f1 of one set of predictions."""
    confusion = confusion_matrix(predictions, labels, num_classes)
    return {"accuracy": accuracy(confusion), "macro_f1": macro_f1(confusion)}


def segmentation_scores(predictions: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """miou, accuracy (overall, per counted entry) and macro_f1 of a dense prediction."""
    confusion = confusion_matrix(predictions, labels, num_classes)
    return {
        "miou": mean_iou(confusion),
        "accuracy": accuracy(confusion),
        "macro_f1": macro_f1(confusion),
    }
