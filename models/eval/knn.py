"""k-nearest-neighbour classification of embeddings, the reference's kNN evaluation.

For each query: cosine similarity to every training embedding, the k most similar
neighbours (k = 20), and a vote where neighbour j adds exp(sim_j / 0.07) to its class. The
temperature 0.07 makes the vote close to "nearest neighbours first": a neighbour with
similarity 0.9 outweighs one with 0.8 by exp(0.1 / 0.07) = 4.2x. The predicted class is the
argmax of the votes; the normalised votes are returned as scores.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from models.config.configurable import Configurable

DEFAULT_K = 20
DEFAULT_TEMPERATURE = 0.07
_EPS = 1e-8


@dataclasses.dataclass(kw_only=True)
class KnnConfig(Configurable["KnnClassifier"]):
    """Attributes:
    k: neighbours per query (clipped to the number of training embeddings).
    temperature: vote weight exp(similarity / temperature), > 0.
    chunk_size: queries per similarity matrix (bounds memory: chunk x train floats).
    """

    k: int = DEFAULT_K
    temperature: float = DEFAULT_TEMPERATURE
    chunk_size: int = 2048

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"KnnConfig.k must be >= 1, got {self.k}")
        if not self.temperature > 0:
            raise ValueError(f"KnnConfig.temperature must be > 0, got {self.temperature}")
        if self.chunk_size < 1:
            raise ValueError(f"KnnConfig.chunk_size must be >= 1, got {self.chunk_size}")

    def build(
        self, train_embeddings: Tensor, train_labels: Tensor, num_classes: int
    ) -> KnnClassifier:
        """A classifier over `train_embeddings` `[Nt, D]` with labels `[Nt]` in [0, K)."""
        return KnnClassifier(self, train_embeddings, train_labels, num_classes)


class KnnClassifier:
    """The training embeddings, unit-normalised once, voting for each query (module doc)."""

    def __init__(
        self, config: KnnConfig, train_embeddings: Tensor, train_labels: Tensor, num_classes: int
    ) -> None:
        if train_embeddings.shape[0] != train_labels.shape[0]:
            raise ValueError(
                f"{train_embeddings.shape[0]} training embeddings but "
                f"{train_labels.shape[0]} labels"
            )
        if train_embeddings.shape[0] == 0:
            raise ValueError("kNN needs at least one training embedding")
        self.config = config
        self.num_classes = num_classes
        self.train = torch.nn.functional.normalize(train_embeddings.double(), dim=1, eps=_EPS)
        self.train_labels = train_labels

    def scores(self, query_embeddings: Tensor) -> Tensor:
        """Similarity-weighted vote shares `[Nq, K]` (rows sum to 1) of each query `[Nq, D]`."""
        k = min(self.config.k, self.train.shape[0])
        chunk_size = self.config.chunk_size
        votes = []
        for start in range(0, query_embeddings.shape[0], chunk_size):
            query = query_embeddings[start : start + chunk_size].double()
            query = torch.nn.functional.normalize(query, dim=1, eps=_EPS)
            similarity = query @ self.train.T  # [chunk, Nt]
            top_similarity, top_index = similarity.topk(k, dim=1)
            weights = torch.exp(top_similarity / self.config.temperature)  # [chunk, k]
            labels = self.train_labels[top_index].long()
            one_hot = torch.nn.functional.one_hot(labels, self.num_classes)
            vote = (weights[:, :, None] * one_hot).sum(dim=1)  # [chunk, K]
            votes.append(vote / vote.sum(dim=1, keepdim=True).clamp_min(_EPS))
        if not votes:
            return torch.zeros(0, self.num_classes, dtype=torch.float64)
        return torch.cat(votes)

    def predict(self, query_embeddings: Tensor) -> Tensor:
        """`[Nq]` predicted class per query (argmax of `scores`)."""
        return self.scores(query_embeddings).argmax(dim=1)
