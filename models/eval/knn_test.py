"""Tests for the similarity-weighted kNN classifier."""

import math

import pytest
import torch

from models.eval import knn


def test_a_query_takes_the_class_of_its_cluster() -> None:
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(3) * 5
    train = torch.cat(
        [centres[c] + 0.3 * torch.randn(10, 3, generator=generator) for c in range(3)]
    )
    labels = torch.arange(3).repeat_interleave(10)
    queries = centres + 0.3 * torch.randn(3, 3, generator=generator)
    predictions = knn.KnnConfig(k=5).build(train, labels, 3).predict(queries)
    assert predictions.tolist() == [0, 1, 2]


def test_votes_are_weighted_by_exp_similarity_over_temperature() -> None:
    # Two neighbours: class 0 at similarity 1, class 1 at similarity 0 (orthogonal).
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    scores = knn.KnnConfig(k=2).build(train, labels, 2).scores(torch.tensor([[2.0, 0.0]]))
    heavy, light = math.exp(1 / 0.07), math.exp(0 / 0.07)
    assert scores[0].tolist() == pytest.approx([heavy / (heavy + light), light / (heavy + light)])


def test_more_far_neighbours_can_outvote_one_close_neighbour_only_without_sharpening() -> None:
    # One neighbour of class 0 at similarity 1; three of class 1 at similarity 0.8.
    angle = math.acos(0.8)
    far = torch.tensor([[math.cos(angle), math.sin(angle)]]).repeat(3, 1)
    train = torch.cat([torch.tensor([[1.0, 0.0]]), far])
    labels = torch.tensor([0, 1, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    sharp = knn.KnnConfig(k=4, temperature=0.07).build(train, labels, 2).predict(query)
    flat = knn.KnnConfig(k=4, temperature=100.0).build(train, labels, 2).predict(query)
    assert sharp.tolist() == [0] and flat.tolist() == [1]


def test_k_larger_than_the_training_set_uses_every_neighbour() -> None:
    scores = (
        knn.KnnConfig()
        .build(torch.randn(3, 4), torch.tensor([0, 1, 1]), 2)
        .scores(torch.randn(2, 4))
    )
    assert scores.shape == (2, 2)
    assert torch.allclose(scores.sum(dim=1), torch.ones(2, dtype=scores.dtype))


def test_chunking_does_not_change_the_scores() -> None:
    train, labels = torch.randn(30, 8), torch.randint(0, 4, (30,))
    queries = torch.randn(7, 8)
    whole = knn.KnnConfig(k=5, chunk_size=100).build(train, labels, 4).scores(queries)
    pieces = knn.KnnConfig(k=5, chunk_size=2).build(train, labels, 4).scores(queries)
    assert torch.allclose(whole, pieces, rtol=0, atol=1e-12)


def test_invalid_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="KnnConfig.k"):
        knn.KnnConfig(k=0)
