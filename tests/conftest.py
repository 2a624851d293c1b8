"""Shared pytest configuration: deterministic, small, CPU-only."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    # Every test compiles from scratch: dynamo's cache would otherwise mark shapes dynamic after
    # an earlier test's compile and trip a torch bug in symbolic shapes (aot_eager, DAGF).
    torch._dynamo.reset()
