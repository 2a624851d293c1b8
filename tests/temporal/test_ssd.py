"""The chunked SSD scan against a token-by-token recurrence written here in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from flashdepth.temporal.ssd import naive_recurrent_scan, segsum, ssd_chunked_scan


def reference_scan(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, state: Tensor | None
) -> tuple[Tensor, Tensor]:
    """h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T; y_t = h_t C_t, per head, in float64."""
    x, dt, A, B, C = (t.double() for t in (x, dt, A, B, C))
    batch, length, nheads, headdim = x.shape
    heads_per_group = nheads // B.shape[2]
    h = torch.zeros(batch, nheads, headdim, B.shape[-1], dtype=torch.float64)
    if state is not None:
        h = state.double().clone()
    y = torch.zeros_like(x)
    for b in range(batch):
        for t in range(length):
            for head in range(nheads):
                group = head // heads_per_group
                decay = torch.exp(dt[b, t, head] * A[head])
                h[b, head] = decay * h[b, head] + dt[b, t, head] * torch.outer(
                    x[b, t, head], B[b, t, group]
                )
                y[b, t, head] = h[b, head] @ C[b, t, group]
    return y, h


def make_inputs(
    length: int,
    batch: int = 2,
    nheads: int = 4,
    headdim: int = 3,
    ngroups: int = 2,
    d_state: int = 16,
    dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """Inputs in the ranges Mamba2 produces: dt in about [1e-3, 1], A in [-16, -1]."""
    return {
        "x": torch.randn(batch, length, nheads, headdim, dtype=dtype),
        "dt": F.softplus(torch.randn(batch, length, nheads, dtype=dtype) - 2),
        "A": -torch.empty(nheads, dtype=dtype).uniform_(1, 16),
        "B": torch.randn(batch, length, ngroups, d_state, dtype=dtype),
        "C": torch.randn(batch, length, ngroups, d_state, dtype=dtype),
    }


@pytest.mark.parametrize("length", [16, 21, 5])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_chunked_scan_equals_recurrence(length: int, with_initial_state: bool) -> None:
    inputs = make_inputs(length)
    state = torch.randn(2, 4, 3, 16) if with_initial_state else None
    y, final = ssd_chunked_scan(**inputs, chunk_size=8, initial_state=state)
    y_ref, final_ref = reference_scan(**inputs, state=state)
    assert y.shape == (2, length, 4, 3) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(final.double(), final_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("with_initial_state", [False, True])
def test_naive_scan_equals_recurrence(with_initial_state: bool) -> None:
    inputs = make_inputs(11)
    state = torch.randn(2, 4, 3, 16) if with_initial_state else None
    y, final = naive_recurrent_scan(**inputs, initial_state=state)
    y_ref, final_ref = reference_scan(**inputs, state=state)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(final.double(), final_ref, rtol=1e-5, atol=1e-5)


def test_float64_inputs_stay_float64() -> None:
    inputs = make_inputs(13, dtype=torch.float64)
    y, final = ssd_chunked_scan(**inputs, chunk_size=4)
    y_ref, final_ref = reference_scan(**inputs, state=None)
    assert y.dtype == final.dtype == torch.float64
    torch.testing.assert_close(y, y_ref, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(final, final_ref, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("split", [8, 3, 13])
def test_two_calls_with_carried_state_equal_one_call(split: int) -> None:
    inputs = make_inputs(21)
    first = {k: v[:, :split] if k != "A" else v for k, v in inputs.items()}
    second = {k: v[:, split:] if k != "A" else v for k, v in inputs.items()}
    y_a, state_a = ssd_chunked_scan(**first, chunk_size=8)
    y_b, state_b = ssd_chunked_scan(**second, chunk_size=8, initial_state=state_a)
    y_full, state_full = ssd_chunked_scan(**inputs, chunk_size=8)
    torch.testing.assert_close(torch.cat([y_a, y_b], dim=1), y_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state_b, state_full, rtol=1e-5, atol=1e-5)


def test_flashdepth_s_config_one_frame() -> None:
    """FlashDepth-S: 8 heads of 32 channels, d_state 256, chunk 256, a 29x29 grid."""
    inputs = make_inputs(841, batch=1, nheads=8, headdim=32, ngroups=1, d_state=256)
    inputs["dt"] = inputs["dt"] * 0.1  # the released dt range is [1e-3, 0.1]
    state = torch.randn(1, 8, 32, 256)
    y, final = ssd_chunked_scan(**inputs, chunk_size=256, initial_state=state)
    y_ref, final_ref = naive_recurrent_scan(
        **{k: v.double() for k, v in inputs.items()}, initial_state=state.double()
    )
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(final.double(), final_ref, rtol=1e-4, atol=1e-4)


def test_strong_decay_over_a_long_chunk_stays_finite() -> None:
    """Products of decays over 256 tokens underflow to 0; ratios of them would give NaN."""
    inputs = make_inputs(256, nheads=2, ngroups=1)
    inputs["dt"] = torch.full_like(inputs["dt"], 5.0)
    inputs["A"] = torch.full_like(inputs["A"], -16.0)
    y, final = ssd_chunked_scan(**inputs, chunk_size=256)
    y_ref, final_ref = reference_scan(**inputs, state=None)
    assert torch.isfinite(y).all() and torch.isfinite(final).all()
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(final.double(), final_ref, rtol=1e-5, atol=1e-5)


def test_gradients_are_finite_through_the_masked_decays() -> None:
    inputs = {k: v.requires_grad_() for k, v in make_inputs(21).items()}
    y, final = ssd_chunked_scan(**inputs, chunk_size=8)
    (y.square().sum() + final.sum()).backward()
    for name, tensor in inputs.items():
        assert torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


def test_bfloat16_inputs_scan_in_float32() -> None:
    inputs = make_inputs(21)
    y_ref, final_ref = ssd_chunked_scan(**inputs, chunk_size=8)
    half = {k: v.bfloat16() if k != "A" else v for k, v in inputs.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, final = ssd_chunked_scan(**half, chunk_size=8)
    assert y.dtype == torch.bfloat16 and final.dtype == torch.float32
    torch.testing.assert_close(y.float(), y_ref, rtol=0.05, atol=0.1)
    torch.testing.assert_close(final, final_ref, rtol=0.05, atol=0.1)


def test_segsum_is_masked_cumulative_sum() -> None:
    log_decay = torch.tensor([1.0, 2.0, 3.0, 4.0])
    sums = segsum(log_decay)
    assert sums[3, 0] == 2.0 + 3.0 + 4.0 and sums[2, 1] == 3.0
    assert torch.equal(sums.diagonal(), torch.zeros(4))
    assert torch.isneginf(sums.triu(diagonal=1)[torch.ones(4, 4).triu(1).bool()]).all()


def test_mismatched_shapes_are_reported() -> None:
    inputs = make_inputs(8)
    with pytest.raises(ValueError, match=r"initial_state must be \(B, H, P, N\)"):
        ssd_chunked_scan(**inputs, chunk_size=4, initial_state=torch.zeros(2, 4, 3, 8))
    inputs["A"] = torch.ones(3)
    with pytest.raises(ValueError, match="A must be"):
        ssd_chunked_scan(**inputs, chunk_size=4)
