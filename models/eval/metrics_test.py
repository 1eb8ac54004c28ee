"""Tests for accuracy, macro-F1 and mIoU computed from one confusion matrix."""

import pytest
import torch

from models.eval import metrics


def test_confusion_matrix_counts_true_rows_against_predicted_columns() -> None:
    labels = torch.tensor([0, 0, 1, 2, metrics.IGNORE_LABEL])
    predictions = torch.tensor([0, 1, 1, 1, 2])
    confusion = metrics.confusion_matrix(predictions, labels, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


def test_ignored_entries_change_no_score() -> None:
    labels = torch.tensor([0, 1, 1, 2])
    predictions = torch.tensor([0, 1, 0, 2])
    with_ignored = metrics.segmentation_scores(
        torch.cat([predictions, torch.tensor([2, 2])]),
        torch.cat([labels, torch.full((2,), metrics.IGNORE_LABEL)]),
        3,
    )
    assert with_ignored == metrics.segmentation_scores(predictions, labels, 3)


def test_scores_match_hand_computed_values() -> None:
    # Class 0: TP 1, FP 1, FN 1 -> F1 0.5, IoU 1/3. Class 1: TP 1, FP 1, FN 0 -> F1 2/3, IoU 1/2.
    # Class 2: TP 0, FP 0, FN 1 -> F1 0, IoU 0. Class 3 never occurs and is not averaged.
    labels = torch.tensor([0, 0, 1, 2])
    predictions = torch.tensor([0, 1, 1, 0])
    scores = metrics.segmentation_scores(predictions, labels, 4)
    assert scores["accuracy"] == pytest.approx(0.5)
    assert scores["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert scores["miou"] == pytest.approx((1 / 3 + 1 / 2 + 0.0) / 3)


def test_a_class_only_predicted_counts_as_zero_f1_in_the_macro_mean() -> None:
    # scikit-learn's macro-F1 averages over classes in labels or predictions: class 2 is only
    # predicted, so the mean is (F1_0 = 1, F1_1 = 2/3, F1_2 = 0) / 3; class 3 is not averaged.
    labels = torch.tensor([0, 1, 1])
    predictions = torch.tensor([0, 1, 2])
    scores = metrics.classification_scores(predictions, labels, 4)
    assert scores["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)


def test_out_of_range_classes_are_refused_with_the_allowed_range() -> None:
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        metrics.confusion_matrix(torch.tensor([3]), torch.tensor([0]), 3)
