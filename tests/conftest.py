"""Shared pytest configuration: deterministic, small, CPU-only."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    # Every test compiles from scratch: dynamo's cache would otherwise mark shapes dynamic after
    # an earlier test's compile and trip a torch bug in symbolic shapes (aot_eager, DAGF).
    torch._dynamo.reset()


@pytest.fixture
def tiny_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every preset built by name during the test is built at the tiny test size.

    See :func:`tests.cli_overrides.shrink_presets`: ``flashdepth stream --model flashdepth-s``
    streams a tiny FlashDepth.
    """
    from tests.cli_overrides import shrink_presets  # the models only for the tests that ask

    shrink_presets(monkeypatch)
