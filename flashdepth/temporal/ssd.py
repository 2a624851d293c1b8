"""The Mamba2 selective state-space scan in pure PyTorch (SSD, chunked form).

Per head the recurrence over tokens ``t`` is::

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * outer(x_t, B_t)      # (P, N)
    y_t = h_t @ C_t                                              # (P,)

with ``x_t`` (P,) the head's channels, ``B_t``/``C_t`` (N,) shared by the heads of a
group, ``dt_t > 0`` the step size and ``A < 0`` the decay rate.

:func:`ssd_chunked_scan` evaluates it with the state-space-duality (SSD) algorithm of
the Mamba2 paper (Dao & Gu, 2024): split the sequence into chunks, solve each chunk
as a masked quadratic form (attention-like, with decays from a segment sum of the
log-decays), summarise each chunk by the state it leaves behind, carry those states
from chunk to chunk with a second segment sum, and add each carried state's
contribution to the chunk's outputs. All decays are ``exp`` of sums of log-decays
(never ratios of cumulative products), so nothing overflows for long chunks.

:func:`naive_recurrent_scan` is the token-by-token loop: slow, obviously correct, kept
as the reference for tests and benchmarks.

The Triton kernel of mamba-ssm (optional, CUDA only) is reached through
:func:`load_triton_chunk_scan`, which imports it lazily and only when asked.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_scan_inputs(
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, initial_state: Tensor | None
) -> None:
    batch, length, nheads, headdim = x.shape
    if dt.shape != (batch, length, nheads):
        raise ValueError(f"dt must be (B, L, H) = {(batch, length, nheads)}, got {tuple(dt.shape)}")
    if A.shape != (nheads,):
        raise ValueError(f"A must be (H,) = ({nheads},), got {tuple(A.shape)}")
    if B.shape != C.shape or B.shape[:2] != (batch, length):
        raise ValueError(
            f"B and C must both be (B, L, G, N) with (B, L) = {(batch, length)}; "
            f"got B {tuple(B.shape)}, C {tuple(C.shape)}"
        )
    ngroups, d_state = B.shape[2:]
    if nheads % ngroups:
        raise ValueError(f"the {nheads} heads cannot be split evenly into {ngroups} groups")
    expected = (batch, nheads, headdim, d_state)
    if initial_state is not None and initial_state.shape != expected:
        raise ValueError(
            f"initial_state must be (B, H, P, N) = {expected}, got {tuple(initial_state.shape)}"
        )


def _autocast_off(x: Tensor) -> contextlib.AbstractContextManager[object]:
    """Disable autocast on ``x``'s device (meta tensors, used for shape checks, have none)."""
    if x.device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, enabled=False)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision inputs, the input's own dtype otherwise (float64 stays)."""
    return torch.promote_types(x.dtype, torch.float32)


def segsum(log_decay: Tensor) -> Tensor:
    """Segment sums of log-decays, masked to the causal lower triangle.

    Args:
        log_decay: ``(..., T)``.

    Returns:
        ``(..., T, T)`` with entry ``[i, j] = log_decay[j+1] + ... + log_decay[i]`` for
        ``i >= j`` (0 on the diagonal) and ``-inf`` above it, so ``exp`` of it is the
        decay from step ``j`` to step ``i`` and exactly 0 for the future.
    """
    length = log_decay.shape[-1]
    # (..., T) -> (..., T, T): column j holds log_decay, zeroed at rows <= j, then summed down.
    grid = log_decay.unsqueeze(-1).expand(*log_decay.shape, length)
    strictly_below = torch.tril(
        torch.ones(length, length, dtype=torch.bool, device=log_decay.device), diagonal=-1
    )
    sums = torch.cumsum(grid.masked_fill(~strictly_below, 0.0), dim=-2)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=log_decay.device))
    return sums.masked_fill(~causal, float("-inf"))


def ssd_chunked_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run the selective scan with the chunked SSD algorithm.

    The sequence is padded internally to a multiple of ``chunk_size`` with ``dt = 0``
    tokens, which neither decay nor feed the state, so the result is exact for any
    length; sequences shorter than ``chunk_size`` use one chunk of their own length.
    The scan runs in float32 (float64 stays float64), also under autocast.

    Args:
        x: Head inputs, ``(B, L, H, P)``.
        dt: Step sizes after softplus, ``(B, L, H)``.
        A: Negative decay rates, ``(H,)``.
        B: Input projections, ``(B, L, G, N)``; head ``i`` uses group ``i // (H // G)``.
        C: Output projections, ``(B, L, G, N)``.
        chunk_size: Tokens per chunk of the quadratic form.
        initial_state: State before the first token, ``(B, H, P, N)``; zeros when ``None``.

    Returns:
        ``(y (B, L, H, P) in x's dtype, final_state (B, H, P, N) in float32 or float64)``.
    """
    _check_scan_inputs(x, dt, A, B, C, initial_state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of tokens, got {chunk_size}")
    batch, length, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2:]
    heads_per_group = nheads // ngroups
    dtype = _compute_dtype(x)
    # The result does not depend on the chunk size: a sequence shorter than one chunk (a
    # pooled frame of a few tokens) is scanned as one chunk of its own length, not padded.
    chunk_size = min(chunk_size, max(length, 1))
    with _autocast_off(x):
        pad = (-length) % chunk_size
        nchunks = (length + pad) // chunk_size
        # Pad the token axis (dim 1), then (B, L', ...) -> (B, c, l, ...) with L' = c * l.
        x_c, B_c, C_c = (
            F.pad(t.to(dtype), (0, 0, 0, 0, 0, pad)).unflatten(1, (nchunks, chunk_size))
            for t in (x, B, C)
        )
        dt_c = F.pad(dt.to(dtype), (0, 0, 0, pad)).unflatten(1, (nchunks, chunk_size))
        # Log-decay of each token, (B, c, l, H) -> (B, H, c, l), and its running sum per chunk.
        log_decay = (dt_c * A.to(dtype)).permute(0, 3, 1, 2)
        cum_decay = torch.cumsum(log_decay, dim=-1)
        x_dt = x_c * dt_c.unsqueeze(-1)  # (B, c, l, H, P)
        B_h = B_c.repeat_interleave(heads_per_group, dim=3)  # (B, c, l, H, N)
        C_h = C_c.repeat_interleave(heads_per_group, dim=3)

        # 1. Within each chunk: y_i = sum_{j<=i} (C_i . B_j) decay(j -> i) dt_j x_j.
        scores = torch.einsum("bclgn,bcsgn->bcgls", C_c, B_c)  # per group, (B, c, G, l, l)
        scores = scores.repeat_interleave(heads_per_group, dim=2)  # (B, c, H, l, l)
        decay_within = torch.exp(segsum(log_decay)).transpose(1, 2)  # (B, c, H, l, l)
        y_within = torch.einsum("bchls,bcshp->bclhp", scores * decay_within, x_dt)

        # 2. The state each chunk leaves behind on its own (from a zero start).
        decay_to_end = decay_within[..., -1, :]  # last row: decay(j -> chunk end), (B, c, H, l)
        chunk_states = torch.einsum("bclhn,bchl,bclhp->bchpn", B_h, decay_to_end, x_dt)

        # 3. Carry states across chunks: entering chunk k = sum_{j<=k} decay(j -> k) state_j,
        # where "state" 0 is the initial state and chunk j's own state is index j + 1.
        if initial_state is None:
            initial_state = x.new_zeros(batch, nheads, headdim, d_state)
        states = torch.cat([initial_state.to(dtype).unsqueeze(1), chunk_states], dim=1)
        chunk_log_decay = F.pad(cum_decay[..., -1], (1, 0))  # (B, H, c + 1)
        decay_across = torch.exp(segsum(chunk_log_decay))  # (B, H, c + 1, c + 1)
        carried = torch.einsum("bhkj,bjhpn->bkhpn", decay_across, states)  # (B, c + 1, H, P, N)
        entering, final_state = carried[:, :-1], carried[:, -1]

        # 4. Each entering state's contribution to its chunk's outputs.
        decay_from_start = torch.exp(cum_decay)  # (B, H, c, l)
        y_carried = torch.einsum("bclhn,bchpn,bhcl->bclhp", C_h, entering, decay_from_start)

        # (B, c, l, H, P) -> (B, L', H, P) -> drop the padding.
        y = (y_within + y_carried).flatten(1, 2)[:, :length]
    return y.to(x.dtype), final_state


def naive_recurrent_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The same scan as :func:`ssd_chunked_scan`, one token at a time.

    A plain Python loop over ``L``: the slow reference for tests and benchmarks, not
    for models. Arguments and returns as in :func:`ssd_chunked_scan` (no chunk size).
    """
    _check_scan_inputs(x, dt, A, B, C, initial_state)
    batch, length, nheads, headdim = x.shape
    ngroups, d_state = B.shape[2:]
    out_dtype, dtype = x.dtype, _compute_dtype(x)
    with _autocast_off(x):
        state = (
            x.new_zeros(batch, nheads, headdim, d_state, dtype=dtype)
            if initial_state is None
            else initial_state.to(dtype)
        )
        B_h = B.to(dtype).repeat_interleave(nheads // ngroups, dim=2)  # (B, L, H, N)
        C_h = C.to(dtype).repeat_interleave(nheads // ngroups, dim=2)
        x, dt = x.to(dtype), dt.to(dtype)
        decay = torch.exp(dt * A.to(dtype))  # (B, L, H)
        outputs = []
        for t in range(length):
            inflow = (dt[:, t, :, None] * x[:, t]).unsqueeze(-1) * B_h[:, t, :, None, :]
            state = decay[:, t, :, None, None] * state + inflow  # (B, H, P, N)
            outputs.append(torch.einsum("bhpn,bhn->bhp", state, C_h[:, t]))
        y = torch.stack(outputs, dim=1) if outputs else torch.zeros_like(x)
    return y.to(out_dtype), state


@functools.cache
def load_triton_chunk_scan() -> Callable[..., tuple[Tensor, Tensor]] | None:
    """mamba-ssm's fused Triton scan ``mamba_chunk_scan_combined``, or ``None``.

    Imported on the first call only (the result is cached), so merely importing
    flashdepth never touches mamba-ssm, whose releases fail to import on machines
    without CUDA. Call it only for CUDA tensors.
    """
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except (ImportError, OSError, RuntimeError) as error:
        warnings.warn(
            f"mamba-ssm's Triton scan is unavailable ({error}); using the pure-PyTorch "
            "chunked scan. Install `flashdepth[mamba]` on a CUDA machine for the fast path.",
            stacklevel=2,
        )
        return None
    return mamba_chunk_scan_combined
