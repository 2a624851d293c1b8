"""The TemporalModule contract, checked on every temporal component.

Dim 0 of every state indexes the batch, and a state's shape is fixed by ``init_state``
(told the pooled grid) so a streaming step compiles into one static graph.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
import torch

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


def test_init_state_indexes_the_batch_on_dim_0(name: str) -> None:
    module = build(name)
    state = module.init_state(3, (5, 6))
    assert state.shape[0] == 3
    assert not state.any()
    # Only dim 0 follows the batch size: the rest of the shape is the same for one video.
    assert state.shape == (3, *module.init_state(1, (5, 6)).shape[1:])


def test_step_keeps_the_feature_shape_and_the_state_shape(name: str) -> None:
    module = build(name)
    x = torch.randn(2, DIM, 5, 6)
    start = module.init_state(2, (5, 6))
    out, state = module.step(x, start)
    assert out.shape == x.shape
    assert state.shape[0] == 2
    assert state.shape == start.shape and state.dtype == start.dtype
    _, state = module.step(torch.randn(2, DIM, 5, 6), state)
    assert state.shape[0] == 2
    assert state.shape == start.shape and state.dtype == start.dtype


def test_clip_forward_equals_a_step_loop(name: str) -> None:
    module = build(name)
    clip = torch.randn(2, 4, DIM, 3, 5)
    start = module.init_state(2, (3, 5))
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
        torch.testing.assert_close(final[i : i + 1], final_i, rtol=1e-5, atol=1e-5)


def test_states_of_videos_concatenate_and_reset_along_dim_0(name: str) -> None:
    module = build(name)
    frames = torch.randn(2, 2, DIM, 4, 4)
    _, state_a = module(frames[:1, :1])
    _, state_b = module(frames[1:, :1])
    # Two videos streamed apart, then batched by concatenating their states on dim 0.
    out, state = module.step(frames[:, 1], torch.cat([state_a, state_b]))
    out_a, next_a = module.step(frames[:1, 1], state_a)
    out_b, next_b = module.step(frames[1:, 1], state_b)
    torch.testing.assert_close(out, torch.cat([out_a, out_b]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, torch.cat([next_a, next_b]), rtol=1e-5, atol=1e-5)
    # Zeroing video 0's slice on dim 0 restarts that video only.
    reset = torch.cat([state_a, state_b]).clone()
    reset[0] = 0
    out, state = module.step(frames[:, 1], reset)
    fresh, fresh_state = module.step(frames[:1, 1], module.init_state(1, (4, 4)))
    torch.testing.assert_close(out, torch.cat([fresh, out_b]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, torch.cat([fresh_state, next_b]), rtol=1e-5, atol=1e-5)


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


def test_compiled_step_gives_the_eager_output(name: str) -> None:
    module = build(name)
    x = torch.randn(2, DIM, 3, 5)
    state = module.init_state(2, (3, 5))
    if name in STATEFUL:
        state = module.step(torch.randn(2, DIM, 3, 5), state)[1]  # a non-zero state
    torch._dynamo.reset()
    compiled = torch.compile(module.step, fullgraph=True, backend="aot_eager", dynamic=False)
    out, new_state = compiled(x, state)
    expected_out, expected_state = module.step(x, state)
    torch.testing.assert_close(out, expected_out)
    torch.testing.assert_close(new_state, expected_state)


def test_compiled_stream_keeps_one_graph_from_init_state(name: str) -> None:
    """The state's shape is static from frame 0, so streaming never recompiles."""
    module = build(name)
    frames = torch.randn(3, 2, DIM, 3, 5)
    torch._dynamo.reset()
    compiled = torch.compile(module.step, fullgraph=True, backend="aot_eager", dynamic=False)
    eager_state = compiled_state = module.init_state(2, (3, 5))
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        for frame in frames:
            out, compiled_state = compiled(frame, compiled_state)
            expected, eager_state = module.step(frame, eager_state)
            torch.testing.assert_close(out, expected)
            torch.testing.assert_close(compiled_state, eager_state)
