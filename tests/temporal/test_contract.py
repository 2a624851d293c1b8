"""The TemporalModule contract, checked on every temporal component."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from flashdepth.temporal import GRUTemporal, IdentityTemporal, MambaTemporal, TemporalModule

DIM = 16
COMPONENTS: dict[str, Callable[[], TemporalModule]] = {
    "mamba": lambda: MambaTemporal(DIM, num_blocks=2, headdim=8, d_state=16, chunk_size=8),
    "gru": lambda: GRUTemporal(DIM),
    "gru-wide": lambda: GRUTemporal(DIM, hidden_dim=24),
    "identity": lambda: IdentityTemporal(DIM),
}
STATEFUL = ["mamba", "gru", "gru-wide"]


@pytest.fixture(params=list(COMPONENTS))
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def build(name: str) -> TemporalModule:
    module = COMPONENTS[name]()
    with torch.no_grad():  # move weights off their initial values so every path matters
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return module


def batch_slice(module: TemporalModule, state: Tensor, index: int) -> Tensor:
    return state.narrow(module.state_batch_dim, index, 1)


def test_init_state_indexes_the_batch(name: str) -> None:
    module = build(name)
    state = module.init_state(3)
    assert state.shape[module.state_batch_dim] == 3
    assert not state.any()


def test_step_keeps_the_feature_shape(name: str) -> None:
    module = build(name)
    x = torch.randn(2, DIM, 5, 6)
    out, state = module.step(x, module.init_state(2))
    assert out.shape == x.shape
    assert state.shape[module.state_batch_dim] == 2
    _, state = module.step(torch.randn(2, DIM, 5, 6), state)
    assert state.shape[module.state_batch_dim] == 2


def test_clip_forward_equals_a_step_loop(name: str) -> None:
    module = build(name)
    clip = torch.randn(2, 4, DIM, 3, 5)
    start = module.init_state(2)
    if name in STATEFUL:
        start = module.step(torch.randn(2, DIM, 3, 5), start)[1]  # a non-zero start
    out, final = module(clip, start)
    state, outputs = start, []
    for t in range(4):
        frame_out, state = module.step(clip[:, t], state)
        outputs.append(frame_out)
    torch.testing.assert_close(out, torch.stack(outputs, 1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(final, state, rtol=1e-6, atol=1e-6)


def test_videos_in_a_batch_are_independent(name: str) -> None:
    module = build(name)
    clip = torch.randn(2, 3, DIM, 4, 4)
    out, final = module(clip)
    for i in range(2):
        out_i, final_i = module(clip[i : i + 1])
        torch.testing.assert_close(out[i : i + 1], out_i, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batch_slice(module, final, i), final_i, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", STATEFUL)
def test_gradient_flows_through_the_carried_state(name: str) -> None:
    module = build(name)
    clip = torch.randn(1, 3, DIM, 4, 4, requires_grad=True)
    out, _ = module(clip)
    out[:, -1].square().sum().backward()
    assert clip.grad[:, 0].abs().sum() > 0, "frame 0 must influence frame T-1 through the state"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_state_round_trips_through_torch_save(name: str) -> None:
    module = build(name)
    frames = torch.randn(2, 2, DIM, 4, 4)
    _, state = module(frames[:, :1])
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert torch.equal(loaded, state) and loaded.dtype == state.dtype
    torch.testing.assert_close(module.step(frames[:, 1], loaded), module.step(frames[:, 1], state))
