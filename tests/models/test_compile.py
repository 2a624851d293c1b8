"""``torch.compile(model.step, fullgraph=True)``: one graph per preset, the eager output.

Every preset's streaming step is captured in one graph (static state shapes, no Python-side
branching on data) and gives the eager output. The presets with ViT-S networks run in the
default suite; those with larger encoders (ViT-B, -L, -G and the frozen FlashDepth-L of the
upsamplers) are built on the meta device, given random values, and run in the slow suite
(`pytest -m slow`): tracing a 40-block ViT-G alone takes minutes on a 2-core CPU.
"""

from __future__ import annotations

import pytest
import torch

import flashdepth

H, W = 56, 84  # multiples of 14 and 4; the low-resolution models see 28 px high frames
SMALL = {"depth-anything-v2-vits", "flashdepth-s", "flashdepth-s-gru", "flashdepth-s-none"}
LOW_RESOLUTION = {"flashdepth-full": {"teacher_resolution": 28}}
LOW_RESOLUTION |= {name: {"resolution": 28} for name in ("flashdepth-l-unet", "flashdepth-l-dagf")}


def build(name: str) -> torch.nn.Module:
    """A preset with random (non-zero) values everywhere, built cheaply."""
    with torch.device("meta"):
        model = flashdepth.create_model(name, **LOW_RESOLUTION.get(name, {}))
    model = model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name_, p in model.named_parameters():
            if name_.endswith(
                ("norm.weight", "norm1.weight", "norm2.weight", "context_norm.weight")
            ):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        for b in model.buffers():
            b.copy_(torch.ones_like(b) if b.dtype.is_floating_point else torch.zeros_like(b))
    return model.eval()


def params(names: list[str]) -> list:
    return [
        pytest.param(
            name, marks=() if name in SMALL or name == "flashdepth-full" else pytest.mark.slow
        )
        for name in names
    ]


@pytest.mark.parametrize("name", params(flashdepth.list_models()))
def test_compiled_step_equals_eager(name: str) -> None:
    torch._dynamo.reset()
    model = build(name)
    frames = torch.randn(3, 1, 3, H, W, generator=torch.Generator().manual_seed(1))
    step = torch.compile(model.step, fullgraph=True, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        eager_state = model.init_state(1, image_size=(H, W))
        compiled_state = model.init_state(1, image_size=(H, W))
        for frame in frames:
            eager, eager_state = model.step(frame, eager_state)
            compiled, compiled_state = step(frame, compiled_state)
            assert compiled.shape == (1, H, W)
            torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
        assert compiled_state.shape == eager_state.shape
        torch.testing.assert_close(compiled_state, eager_state, atol=1e-4, rtol=1e-4)
