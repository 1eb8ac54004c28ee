"""Repository-wide pytest setup: tests are small, CPU-only and deterministic.

Two threads keep one test from starving the others when Bazel runs tests in parallel on a
2-core machine; seeds make every random tensor reproducible.
"""

import random

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield
