"""Repository-wide pytest setup: tests are small, CPU-only and deterministic.

It imports nothing heavy itself (so a test that does not use torch does not depend on it in
Bazel's eyes); it seeds whatever the test module already imported. Two threads keep one
test from starving the others when Bazel runs tests in parallel on a 2-core machine.
"""

import random
import sys

import pytest


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    if (numpy := sys.modules.get("numpy")) is not None:
        numpy.random.seed(0)
    if (torch := sys.modules.get("torch")) is not None:
        torch.manual_seed(0)
        torch.set_num_threads(2)
    yield
