"""GRUTemporal: the ConvGRU equations, the zero initial map of the grid and grid checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from flashdepth.temporal.gru import GRUTemporal


def reference_gru(gru: GRUTemporal, x: Tensor, h: Tensor) -> Tensor:
    """r, u = sigmoid(W_g * [x, h]); n = tanh(W_n * [x, r h]); h' = (1 - u) h + u n."""
    pad = gru.conv_gates.kernel_size[0] // 2
    gates = torch.sigmoid(
        F.conv2d(torch.cat([x, h], 1), gru.conv_gates.weight, gru.conv_gates.bias, padding=pad)
    )
    r, u = gates[:, : gru.hidden_dim], gates[:, gru.hidden_dim :]
    n = torch.tanh(
        F.conv2d(
            torch.cat([x, r * h], 1),
            gru.conv_candidate.weight,
            gru.conv_candidate.bias,
            padding=pad,
        )
    )
    return (1 - u) * h + u * n


def test_step_follows_the_gru_equations() -> None:
    gru = GRUTemporal(8, kernel_size=3)
    x, h = torch.randn(2, 8, 5, 6), torch.randn(2, 8, 5, 6)
    out, new_h = gru.step(x, h)
    expected = reference_gru(gru, x, h)
    torch.testing.assert_close(new_h, expected)
    torch.testing.assert_close(out, expected)  # hidden_dim == dim: the output is h itself


def test_initial_state_is_a_zero_map_of_the_static_grid() -> None:
    gru = GRUTemporal(8)
    state = gru.init_state(3, (4, 7))
    assert state.shape == (3, 8, 4, 7) and state.dtype == gru.conv_gates.weight.dtype
    assert torch.equal(state, torch.zeros(3, 8, 4, 7))
    x = torch.randn(3, 8, 4, 7)
    out, hidden = gru.step(x, state)
    assert hidden.shape == (3, 8, 4, 7)
    torch.testing.assert_close(out, reference_gru(gru, x, torch.zeros(3, 8, 4, 7)))
    # The second frame keeps the shape fixed by init_state.
    x2 = torch.randn(3, 8, 4, 7)
    out2, hidden2 = gru.step(x2, hidden)
    assert hidden2.shape == state.shape == (3, 8, 4, 7)
    torch.testing.assert_close(out2, reference_gru(gru, x2, hidden))


def test_init_state_without_a_grid_is_reported() -> None:
    gru = GRUTemporal(8)
    message = (
        r"state is a map of the pooled grid.*pass image_size=\(H, W\) to the model's init_state"
    )
    with pytest.raises(ValueError, match=message):
        gru.init_state(1, None)
    with pytest.raises(ValueError, match=message):
        gru.init_state(2, grid=None, dtype=torch.float32)


def test_hidden_width_other_than_dim_projects_back() -> None:
    gru = GRUTemporal(8, hidden_dim=12, kernel_size=5)
    x = torch.randn(1, 8, 4, 4)
    out, hidden = gru.step(x, gru.init_state(1, (4, 4)))
    assert out.shape == (1, 8, 4, 4) and hidden.shape == (1, 12, 4, 4)
    torch.testing.assert_close(out, gru.out_proj(reference_gru(gru, x, torch.zeros(1, 12, 4, 4))))
    assert GRUTemporal(8).out_proj is None


def test_grid_size_change_is_reported_with_both_sizes() -> None:
    gru = GRUTemporal(8)
    _, hidden = gru.step(torch.randn(1, 8, 4, 7), gru.init_state(1, (4, 7)))
    with pytest.raises(ValueError, match=r"\(4, 7\) does not match .* \(5, 7\)"):
        gru.step(torch.randn(1, 8, 5, 7), hidden)
    # A state built for another grid says to build it from init_state with the frame's grid.
    with pytest.raises(
        ValueError, match=r"\(4, 7\) does not match .* \(5, 7\); .*init_state\(batch, grid="
    ):
        gru.step(torch.randn(1, 8, 5, 7), gru.init_state(1, (4, 7)))


def test_bad_configuration_and_inputs_are_reported() -> None:
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        GRUTemporal(8, kernel_size=4)
    gru = GRUTemporal(8)
    with pytest.raises(ValueError, match="got features with 4 channels"):
        gru.step(torch.randn(1, 4, 3, 3), gru.init_state(1, (3, 3)))
    with pytest.raises(ValueError, match=r"\(B, hidden_dim\) = \(2, 8\)"):
        gru.step(torch.randn(2, 8, 3, 3), gru.init_state(1, (3, 3)))
