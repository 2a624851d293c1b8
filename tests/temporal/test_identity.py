"""IdentityTemporal: the per-frame baseline passes features and state through."""

from __future__ import annotations

import pytest
import torch

from flashdepth.temporal.identity import IdentityTemporal


def test_features_and_state_pass_through() -> None:
    module = IdentityTemporal(8)
    state = module.init_state(3, (5, 5))
    assert state.shape == (3, 0)
    assert module.init_state(3, None).shape == (3, 0)  # the grid is not needed
    clip = torch.randn(3, 4, 8, 5, 5)
    out, final = module(clip)
    assert torch.equal(out, clip) and final.shape == (3, 0)
    x = clip[:, 0]
    step_out, step_state = module.step(x, state)
    assert step_out is x and step_state is state


def test_mismatched_inputs_are_reported() -> None:
    module = IdentityTemporal(8)
    with pytest.raises(ValueError, match="got 4 channels"):
        module.step(torch.randn(2, 4, 3, 3), module.init_state(2, (3, 3)))
    with pytest.raises(ValueError, match="state is for 3 videos but the frame batch has 2"):
        module.step(torch.randn(2, 8, 3, 3), module.init_state(3, (3, 3)))
