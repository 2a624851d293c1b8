"""UNetUpsampler: parameter count, data flow at each resolution, output and size checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.fusion.base import FusionInputs
from flashdepth.fusion.unet import SiLUResidualConvUnit, UNetUpsampler

CONTEXT_DIM = 128


def make_inputs(batch: int = 2, height: int = 16, width: int = 20) -> FusionInputs:
    """A small frame and low-resolution features on a 3x4 grid."""
    return FusionInputs(
        frame=torch.randn(batch, 3, height, width),
        context=torch.randn(batch, CONTEXT_DIM, 3, 4),
        low_res_depth=torch.rand(batch, 42, 56),
    )


def record_inputs(upsampler: UNetUpsampler) -> dict[str, Tensor]:
    """Capture what each named stage receives during the next forward pass."""
    seen: dict[str, Tensor] = {}
    for name in ("rgb_encoder1", "rgb_encoder2", "decoder_low", "decoder_high", "head"):

        def hook(module: nn.Module, args: tuple[Tensor], name: str = name) -> None:
            seen[name] = args[0]

        getattr(upsampler, name).register_forward_pre_hook(hook)
    return seen


def test_parameter_count_and_module_names() -> None:
    upsampler = UNetUpsampler()
    assert upsampler.produces == "depth"
    counts = {
        name: sum(p.numel() for p in m.parameters()) for name, m in upsampler.named_children()
    }
    assert counts == {
        "rgb_encoder1": 38_912,
        "rgb_encoder2": 229_632,
        "decoder_low": 475_392,
        "decoder_high": 393_472,
        "head": 36_929,
    }
    assert sum(p.numel() for p in upsampler.parameters()) == 1_174_337
    assert upsampler.decoder_low.skip.bias is None
    assert torch.all(upsampler.head[0].bias == 0.1) and torch.all(upsampler.head[2].bias == 0.2)


def test_residual_unit_equation_and_identity_skip() -> None:
    unit = SiLUResidualConvUnit(8, 8)
    assert isinstance(unit.skip, nn.Identity)
    x = torch.randn(2, 8, 5, 6)
    expected = unit.conv2(F.silu(unit.conv1(F.silu(x)))) + x
    torch.testing.assert_close(unit(x), expected)
    widening = SiLUResidualConvUnit(3, 8)
    x = torch.randn(2, 3, 5, 6)
    expected = widening.conv2(F.silu(widening.conv1(F.silu(x)))) + widening.skip(x)
    torch.testing.assert_close(widening(x), expected)
    assert widening.skip.weight.shape == (8, 3, 1, 1)


def test_stages_run_at_full_half_and_quarter_resolution() -> None:
    upsampler = UNetUpsampler()
    seen = record_inputs(upsampler)
    inputs = make_inputs()
    out = upsampler(inputs)
    assert out.shape == (2, 16, 20)
    shapes = {name: tuple(x.shape) for name, x in seen.items()}
    assert shapes == {
        "rgb_encoder1": (2, 3, 16, 20),
        "rgb_encoder2": (2, 64, 8, 10),
        "decoder_low": (2, 256, 4, 5),
        "decoder_high": (2, 192, 8, 10),
        "head": (2, 128, 16, 20),
    }
    assert torch.equal(seen["rgb_encoder1"], inputs.frame)
    # The context enters first, resized bilinearly with aligned corners; the RGB skip follows.
    resized = F.interpolate(inputs.context, (4, 5), mode="bilinear", align_corners=True)
    torch.testing.assert_close(seen["decoder_low"][:, :CONTEXT_DIM], resized)
    torch.testing.assert_close(seen["decoder_low"][:, 0, 0, 0], inputs.context[:, 0, 0, 0])
    pooled = F.avg_pool2d(upsampler.rgb_encoder1(inputs.frame), 2)
    # decoder_high sees the 128 upsampled decoder channels, then the half-resolution RGB skip
    torch.testing.assert_close(seen["decoder_high"][:, 128:], pooled)


def test_output_is_non_negative_alive_and_uses_both_inputs() -> None:
    upsampler = UNetUpsampler()
    inputs = make_inputs()
    out = upsampler(inputs)
    assert out.min() >= 0 and (out > 0).float().mean() > 0.5  # positive biases: alive at init
    seen = record_inputs(upsampler)
    upsampler(inputs)
    before_relu = upsampler.head[:3](seen["head"])
    with torch.no_grad():  # shift the last bias so about half the pixels go negative
        upsampler.head[2].bias -= before_relu.median()
    clipped = upsampler(inputs)
    assert clipped.min() == 0 and clipped.max() > 0  # the ReLU clips negatives, not everything
    torch.testing.assert_close(clipped, upsampler.head[:3](seen["head"]).clamp(min=0).squeeze(1))
    with torch.no_grad():
        upsampler.head[2].bias.fill_(0.2)
    new_context = FusionInputs(inputs.frame, torch.randn_like(inputs.context))
    new_frame = FusionInputs(torch.randn_like(inputs.frame), inputs.context)
    assert (upsampler(new_context) - out).abs().amax() > 1e-4
    assert (upsampler(new_frame) - out).abs().amax() > 1e-4


def test_samples_of_a_batch_are_independent() -> None:
    upsampler = UNetUpsampler()
    inputs = make_inputs(batch=3)
    batched = upsampler(inputs)
    for i in range(3):
        single = FusionInputs(inputs.frame[i : i + 1], inputs.context[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], upsampler(single), atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter() -> None:
    upsampler = UNetUpsampler()
    upsampler(make_inputs()).square().mean().backward()
    for name, p in upsampler.named_parameters():
        assert p.grad is not None and p.grad.abs().amax() > 0, name


def test_input_validation_names_the_problem() -> None:
    upsampler = UNetUpsampler()
    with pytest.raises(ValueError, match="divisible by 4, got 18x20"):
        upsampler(make_inputs(height=18))
    with pytest.raises(ValueError, match="divisible by 4, got 16x22"):
        upsampler(make_inputs(width=22))
    with pytest.raises(ValueError, match=r"\(N, 128, h, w\).*got \(2, 64, 3, 4\)"):
        upsampler(FusionInputs(torch.randn(2, 3, 16, 20), torch.randn(2, 64, 3, 4)))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(2, 1, 16, 20\)"):
        upsampler(FusionInputs(torch.randn(2, 1, 16, 20), torch.randn(2, 128, 3, 4)))
    with pytest.raises(ValueError, match="dim must be 1, got 64"):
        UNetUpsampler(dim=64)


def test_compiled_fullgraph_matches_eager() -> None:
    upsampler = UNetUpsampler()
    inputs = make_inputs()
    compiled = torch.compile(upsampler, fullgraph=True, backend="aot_eager", dynamic=False)
    torch.testing.assert_close(compiled(inputs), upsampler(inputs), atol=1e-6, rtol=1e-6)
