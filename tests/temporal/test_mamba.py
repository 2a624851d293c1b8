"""Mamba2 mixer, MambaBlock and MambaTemporal: layout, semantics, dispatch."""

from __future__ import annotations

import importlib.abc
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from flashdepth.temporal import mamba as mamba_module
from flashdepth.temporal.mamba import Mamba2, MambaBlock, MambaTemporal
from flashdepth.temporal.ssd import load_triton_chunk_scan, ssd_chunked_scan

SMALL = {"d_state": 16, "chunk_size": 8, "expand": 2, "headdim": 8}


def reference_mamba2(m: Mamba2, u: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor]:
    """Mamba2 on one call's tokens, from the module's weights, in float64.

    The conv sees only these tokens (zero left padding); the SSM starts from ``state``.
    """
    w = {k: v.detach().double() for k, v in m.state_dict().items()}
    u = u.double()
    batch, length, _ = u.shape
    heads, headdim, d_state, groups = m.nheads, m.headdim, m.d_state, m.ngroups
    d_inner, conv_dim = m.d_inner, m.d_inner + 2 * groups * d_state
    zxbcdt = u @ w["in_proj.weight"].T
    z, xbc, dt = zxbcdt[..., :d_inner], zxbcdt[..., d_inner:-heads], zxbcdt[..., -heads:]
    width = w["conv1d.weight"].shape[-1]
    xbc = F.conv1d(
        F.pad(xbc.transpose(1, 2), (width - 1, 0)),
        w["conv1d.weight"],
        w["conv1d.bias"],
        groups=conv_dim,
    ).transpose(1, 2)
    xbc = F.silu(xbc)
    x = xbc[..., :d_inner].reshape(batch, length, heads, headdim)
    B = xbc[..., d_inner : d_inner + groups * d_state].reshape(batch, length, groups, d_state)
    C = xbc[..., d_inner + groups * d_state :].reshape(batch, length, groups, d_state)
    dt = F.softplus(dt + w["dt_bias"])
    A = -torch.exp(w["A_log"])
    h = torch.zeros(batch, heads, headdim, d_state, dtype=torch.float64)
    if state is not None:
        h = state.double().clone()
    y = torch.zeros_like(x)
    for t in range(length):
        for head in range(heads):
            g = head // (heads // groups)
            h[:, head] = torch.exp(dt[:, t, head] * A[head])[:, None, None] * h[:, head] + (
                dt[:, t, head, None, None] * x[:, t, head, :, None] * B[:, t, g, None, :]
            )
            y[:, t, head] = torch.einsum("bpn,bn->bp", h[:, head], C[:, t, g])
            y[:, t, head] += w["D"][head] * x[:, t, head]
    gated = (y.reshape(batch, length, d_inner) * F.silu(z)).unflatten(-1, (groups, -1))
    normed = gated / torch.sqrt(gated.pow(2).mean(-1, keepdim=True) + 1e-5)
    out = (normed.flatten(-2) * w["norm.weight"]) @ w["out_proj.weight"].T
    return out, h


def randomise_(module: torch.nn.Module) -> None:
    """Move the weights off their initial values (D = 1, norm = 1) so each one matters."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize(
    ("d_model", "expand", "headdim", "in_proj", "conv"),
    [(64, 4, 32, (1032, 64), (768, 1, 4)), (256, 2, 64, (1544, 256), (1024, 1, 4))],
    ids=["FlashDepth-S", "FlashDepth-L"],
)
def test_parameter_names_and_shapes(
    d_model: int, expand: int, headdim: int, in_proj: tuple[int, int], conv: tuple[int, int, int]
) -> None:
    shapes = {
        k: tuple(v.shape)
        for k, v in Mamba2(d_model, expand=expand, headdim=headdim).state_dict().items()
    }
    d_inner = expand * d_model
    assert shapes == {
        "in_proj.weight": in_proj,
        "conv1d.weight": conv,
        "conv1d.bias": (conv[0],),
        "dt_bias": (8,),
        "A_log": (8,),
        "D": (8,),
        "norm.weight": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


def test_headdim_must_divide_inner_width() -> None:
    message = r"d_inner = expand \* d_model = 2 \* 64 = 128 .* headdim = 48"
    with pytest.raises(ValueError, match=message):
        Mamba2(64, expand=2, headdim=48)


def test_initialisation_ranges() -> None:
    m = Mamba2(64, expand=4, headdim=8, dt_min=0.001, dt_max=0.1)
    dt = F.softplus(m.dt_bias)
    assert ((dt >= 0.001 - 1e-6) & (dt <= 0.1 + 1e-6)).all()
    assert ((m.A_log.exp() >= 1) & (m.A_log.exp() <= 16)).all()
    assert torch.equal(m.D.data, torch.ones(32))
    assert torch.equal(m.norm.weight.data, torch.ones(256))


def test_temporal_state_dict_keys_match_the_released_layout() -> None:
    per_block = [
        "norm1.weight", "norm1.bias", "mamba.in_proj.weight", "mamba.conv1d.weight",
        "mamba.conv1d.bias", "mamba.dt_bias", "mamba.A_log", "mamba.D", "mamba.norm.weight",
        "mamba.out_proj.weight", "norm2.weight", "norm2.bias", "mlp.0.weight", "mlp.0.bias",
        "mlp.2.weight", "mlp.2.bias",
    ]  # fmt: skip
    keys = set(MambaTemporal(64, expand=4, headdim=32).state_dict())
    assert keys == {f"blocks.{i}.{name}" for i in range(4) for name in per_block}


@pytest.mark.parametrize("ngroups", [1, 2])
def test_forward_matches_reference(ngroups: int) -> None:
    m = Mamba2(16, ngroups=ngroups, **SMALL)
    randomise_(m)
    u, state = torch.randn(2, 13, 16), torch.randn(2, 4, 8, 16)
    out, final = m(u, state)
    out_ref, final_ref = reference_mamba2(m, u, state)
    assert final.dtype == torch.float32
    torch.testing.assert_close(out.double(), out_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(final.double(), final_ref, rtol=1e-5, atol=1e-5)


def test_conv_restarts_on_every_call() -> None:
    m = Mamba2(16, **SMALL)
    randomise_(m)
    a, b = torch.randn(1, 11, 16), torch.randn(1, 9, 16)
    out_ab, _ = m(torch.cat([a, b], dim=1))
    out_a, state_a = m(a)
    out_b, _ = m(b, state_a)
    # One call lets the conv window of b's first tokens see a's last ones; two calls do not.
    assert (out_ab[:, 11:] - out_b).abs().max() > 1e-3
    torch.testing.assert_close(out_ab[:, :11], out_a, rtol=1e-5, atol=1e-5)
    out_b_ref, _ = reference_mamba2(m, b, reference_mamba2(m, a, None)[1])
    torch.testing.assert_close(out_b.double(), out_b_ref, rtol=1e-5, atol=1e-5)


def test_frame_axis_equals_calls_with_carried_state() -> None:
    m = Mamba2(16, **SMALL)
    randomise_(m)
    frames = torch.randn(2, 3, 10, 16)  # (B, T, L, C)
    out, final = m(frames)
    state, expected = None, []
    for t in range(3):
        out_t, state = m(frames[:, t], state)
        expected.append(out_t)
    torch.testing.assert_close(out, torch.stack(expected, dim=1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(final, state, rtol=1e-5, atol=1e-5)


def test_bfloat16_autocast_keeps_a_float32_state() -> None:
    m = Mamba2(16, **SMALL)
    u = torch.randn(1, 12, 16)
    out_ref, state_ref = m(u)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state = m(u)
    assert state.dtype == torch.float32
    torch.testing.assert_close(out.float(), out_ref, rtol=0.05, atol=0.05)
    torch.testing.assert_close(state, state_ref, rtol=0.05, atol=0.05)


def test_wrong_state_shape_is_reported() -> None:
    m = Mamba2(16, **SMALL)
    with pytest.raises(ValueError, match=r"ssm_state must be .* = \(1, 4, 8, 16\)"):
        m(torch.randn(1, 5, 16), torch.zeros(1, 4, 8, 32))
    with pytest.raises(ValueError, match="B, num_blocks, nheads"):
        MambaTemporal(16, num_blocks=2, **SMALL).step(torch.randn(1, 16, 2, 2), torch.zeros(1))
    model = MambaTemporal(16, num_blocks=2, **SMALL)
    # The old (num_blocks, B, ...) layout is rejected, naming the expected shape.
    message = r"\(B, num_blocks, nheads, headdim, d_state\) = \(1, 2, 4, 8, 16\)"
    with pytest.raises(ValueError, match=message):
        model.step(torch.randn(1, 16, 2, 2), torch.zeros(2, 1, 4, 8, 16))
    with pytest.raises(ValueError, match=r"expects a frame \(B, C, h, w\), got \(1, 16, 4\)"):
        model.step(torch.randn(1, 16, 4), model.init_state(1, (1, 4)))
    with pytest.raises(ValueError, match=r"expects a clip \(B, T, C, h, w\), got \(1, 16, 4\)"):
        model(torch.randn(1, 16, 4))


class _ImportRecorder(importlib.abc.MetaPathFinder):
    """Records attempts to import mamba_ssm (and lets them fail)."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.split(".")[0] == "mamba_ssm":
            self.attempts.append(fullname)
            raise ImportError("mamba_ssm is blocked in this test")
        return None


def test_cpu_forward_never_imports_mamba_ssm(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = _ImportRecorder()
    monkeypatch.setattr(sys, "meta_path", [recorder, *sys.meta_path])
    monkeypatch.delitem(sys.modules, "mamba_ssm", raising=False)
    load_triton_chunk_scan.cache_clear()
    model = MambaTemporal(16, num_blocks=2, use_triton=True, **SMALL)
    model(torch.randn(1, 2, 16, 3, 3))
    assert recorder.attempts == [] and "mamba_ssm" not in sys.modules
    # The recorder does see the import once the loader is called (as it is on CUDA).
    with pytest.warns(UserWarning, match="pure-PyTorch chunked scan"):
        assert load_triton_chunk_scan() is None
    assert recorder.attempts == ["mamba_ssm"]
    load_triton_chunk_scan.cache_clear()


def test_triton_dispatch_passes_raw_dt_bias_and_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the kernel available, it receives raw dt, dt_bias, D and the carried state."""
    calls = []

    def fake_kernel(
        x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int, **kwargs: Tensor
    ) -> tuple[Tensor, Tensor]:
        D, dt_bias, initial_states = kwargs["D"], kwargs["dt_bias"], kwargs["initial_states"]
        calls.append((chunk_size, kwargs["dt_softplus"], kwargs["return_final_states"]))
        y, state = ssd_chunked_scan(x, F.softplus(dt + dt_bias), A, B, C, 4, initial_states)
        return y + x * D[:, None], state.bfloat16()

    m = Mamba2(16, **SMALL)
    randomise_(m)
    u, state = torch.randn(2, 9, 16), torch.randn(2, 4, 8, 16)
    expected = m(u, state)
    monkeypatch.setattr(mamba_module, "_wants_triton", lambda use_triton, x: use_triton)
    monkeypatch.setattr(mamba_module, "load_triton_chunk_scan", lambda: fake_kernel)
    out, final = m(u, state)
    assert calls == [(8, True, True)] and final.dtype == torch.float32
    torch.testing.assert_close(out, expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(final, expected[1], rtol=0.01, atol=0.02)
    m.use_triton = False
    m(u, state)
    assert len(calls) == 1


def test_block_is_pre_norm_residual() -> None:
    block = MambaBlock(16, **SMALL)
    randomise_(block)
    x, state = torch.randn(2, 7, 16), torch.randn(2, 4, 8, 16)
    out, new_state = block(x, state)
    mixed, expected_state = block.mamba(block.norm1(x), state)
    h = x + mixed
    h = h + block.mlp[2](F.gelu(block.mlp[0](block.norm2(h))))
    torch.testing.assert_close(out, h)
    torch.testing.assert_close(new_state, expected_state)


def test_init_state_is_float32_zeros_batch_first_for_any_grid() -> None:
    model = MambaTemporal(16, num_blocks=2, **SMALL)
    state = model.init_state(3, (5, 6), dtype=torch.bfloat16)
    assert state.shape == (3, 2, 4, 8, 16) and state.dtype == torch.float32
    assert torch.equal(state, torch.zeros(3, 2, 4, 8, 16))
    # The SSM state does not depend on the grid, so the grid may be left out.
    assert torch.equal(model.init_state(3, None), state)


def test_step_scans_the_grid_row_major() -> None:
    model = MambaTemporal(16, num_blocks=2, **SMALL)
    randomise_(model)
    grid = torch.randn(1, 16, 3, 4)
    state = torch.randn(1, 2, 4, 8, 16)  # (B, num_blocks, nheads, headdim, d_state)
    out, new_state = model.step(grid, state)
    assert new_state.shape == state.shape
    tokens = torch.stack([grid[0, :, i, j] for i in range(3) for j in range(4)])[None]
    for i, block in enumerate(model.blocks):
        tokens, block_state = block(tokens, state[:, i])
        torch.testing.assert_close(new_state[:, i], block_state)
    torch.testing.assert_close(out[0, :, 1, 2], tokens[0, 1 * 4 + 2])
    torch.testing.assert_close(out.flatten(2).transpose(1, 2), tokens)
