"""Repository-wide pytest setup: tests are small, CPU-only and deterministic.

Tests that take the `device` fixture run on TERRA_LAB_TEST_DEVICE (cpu unless set; cuda on a
GPU machine, tools/bench/gpu_check.sh), the rest on the CPU.

It imports nothing heavy itself (so a test that does not use torch does not depend on it in
Bazel's eyes); it seeds whatever the test module already imported. Two threads keep one
test from starving the others when Bazel runs tests in parallel on a 2-core machine.
"""

import os
import random
import sys

import pytest

TEST_DEVICE_VARIABLE = "TERRA_LAB_TEST_DEVICE"
"""Where tests that take the `device` fixture run: cpu (default) or cuda (tools/bench/gpu_check.sh
sets it on a GPU machine)."""


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    if (numpy := sys.modules.get("numpy")) is not None:
        numpy.random.seed(0)
    if (torch := sys.modules.get("torch")) is not None:
        torch.manual_seed(0)
        torch.set_num_threads(2)
    yield


@pytest.fixture
def device():
    """The torch device of TERRA_LAB_TEST_DEVICE (cpu when unset); skips where it is absent."""
    import torch

    name = os.environ.get(TEST_DEVICE_VARIABLE) or "cpu"
    if name not in ("cpu", "cuda"):
        pytest.fail(f"{TEST_DEVICE_VARIABLE}={name!r}: use cpu or cuda", pytrace=False)
    if name == "cuda" and not torch.cuda.is_available():
        pytest.skip(
            f"{TEST_DEVICE_VARIABLE}=cuda but torch {torch.__version__} sees no CUDA device"
        )
    return torch.device(name)
