"""DAGFUpsampler: parameter count, kernels and filter, sizes, depth scale, gradients, compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flashdepth.fusion.base import FusionInputs
from flashdepth.fusion.dagf import AdaptiveNorm, DAGFUpsampler
from flashdepth.transforms import normalize


def make_inputs(
    batch: int = 2, height: int = 32, width: int = 48, low_res: tuple[int, int] = (8, 12)
) -> FusionInputs:
    """A random ImageNet-normalised frame and ×100 inverse depth between 20 and 80."""
    return FusionInputs(
        frame=normalize(torch.rand(batch, 3, height, width)),
        context=torch.randn(batch, 128, 2, 3),
        low_res_depth=20 + 60 * torch.rand(batch, *low_res),
    )


def with_depth(inputs: FusionInputs, low_res_depth: torch.Tensor) -> FusionInputs:
    return FusionInputs(inputs.frame, inputs.context, low_res_depth)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_with_defaults() -> None:
    dagf = DAGFUpsampler()
    assert dagf.produces == "depth"
    assert count(dagf) == 2_392_130
    assert [count(level.weight_net) for level in dagf.filter_levels] == [707_499] * 3
    assert count(dagf.filter_levels[0].weight_net[1]) == 688_674  # the attention U-Net
    rest = [count(level) - 707_499 for level in dagf.filter_levels]
    assert rest == [58_523, 76_989, 76_989]
    encoders = sum(count(m) for m in (dagf.depth_encoder, dagf.guide_encoder))
    encoders += sum(count(m) for m in (dagf.depth_pyramid, dagf.guide_pyramid))
    assert (encoders, count(dagf.residual_head)) == (56_842, 290)
    assert all(level.kernel_scale.item() == 4.5 for level in dagf.filter_levels)
    norms = [m for m in dagf.modules() if isinstance(m, AdaptiveNorm)]
    assert len(norms) == 3 * 8
    assert all(m.w0.item() == 1.0 and m.w1.item() == 0.0 for m in norms)


@pytest.mark.parametrize(
    ("height", "width", "level_sizes"),
    [(32, 48, [(8, 12), (16, 24), (32, 48)]), (40, 52, [(10, 13), (20, 26), (40, 52)])],
)
def test_output_keeps_the_frame_size(
    height: int, width: int, level_sizes: list[tuple[int, int]]
) -> None:
    dagf = DAGFUpsampler().eval()
    inputs = make_inputs(height=height, width=width, low_res=(10, 13))
    with torch.no_grad():
        levels = dagf.level_outputs(inputs)
        out = dagf(inputs)
        other_context = dagf(
            FusionInputs(inputs.frame, torch.zeros(2, 7, 1, 1), inputs.low_res_depth)
        )
    assert out.shape == (2, height, width)
    assert [tuple(level.shape[1:]) for level in levels] == level_sizes
    torch.testing.assert_close(out, levels[-1], rtol=0, atol=0)
    torch.testing.assert_close(other_context, out, rtol=0, atol=0)  # context is ignored


def test_negative_predictions_are_clamped_to_zero() -> None:
    dagf = DAGFUpsampler().eval()
    with torch.no_grad():
        # The normalised depth is 1/3..4/3; a residual around -0.25 drives part of it below 0.
        dagf.residual_head[0].bias.fill_(-1.0)
        inputs = make_inputs()
        depth = inputs.low_res_depth
        depth[:, :, :6] = 0.0  # "sky" on half the frame
        outputs = dagf.level_outputs(inputs)
    for out in outputs:
        assert (out >= 0).all() and (out == 0).any() and (out > 0).any()


def test_constant_depth_comes_back_unchanged_when_the_residual_is_silent() -> None:
    # Bicubic and area resampling preserve a constant and the filter only feeds the residual,
    # so with the residual head zeroed every level returns the input constant, whatever the
    # frame, through the mean normalisation, padding (40x52 -> 48x64) and crop.
    dagf = DAGFUpsampler().eval()
    with torch.no_grad():
        dagf.residual_head[0].weight.zero_()
        dagf.residual_head[0].bias.zero_()
        inputs = make_inputs(height=40, width=52, low_res=(10, 13))
        outputs = dagf.level_outputs(with_depth(inputs, torch.full((2, 10, 13), 37.5)))
    for out in outputs:
        torch.testing.assert_close(out, torch.full_like(out, 37.5))


def test_kernels_are_non_expansive_and_filter_is_a_dilated_unfold() -> None:
    level = DAGFUpsampler().filter_levels[1]
    depth, guide = 5 * torch.randn(2, 32, 8, 12), 5 * torch.randn(2, 32, 8, 12)
    with torch.no_grad():
        kernel = level.kernel(depth, guide)
        assert kernel.shape == (2, 9, 8, 12)
        assert (kernel.abs().sum(dim=1) <= 1 + 1e-6).all()
        level.kernel_scale.fill_(0.1)  # sum|tanh(K)| / 0.1 > 1 everywhere: normalised to 1
        sharp = level.kernel(depth, guide)
    torch.testing.assert_close(sharp.abs().sum(dim=1), torch.ones(2, 8, 12))

    x = torch.randn(2, 4, 8, 12)
    # (N, C*9, h*w) -> (N, C, 9, h, w): taps of a 3x3 neighbourhood with dilation 2
    patches = F.unfold(F.pad(x, (2, 2, 2, 2), mode="replicate"), 3, dilation=2)
    expected = torch.einsum("nkhw,nckhw->nchw", kernel, patches.view(2, 4, 9, 8, 12))
    torch.testing.assert_close(level.filter(x, kernel), expected)
    # A constant map comes out as c * sum(K), never larger than c (borders included).
    constant = level.filter(torch.full((2, 4, 8, 12), 3.0), kernel)
    torch.testing.assert_close(constant, 3.0 * kernel.sum(dim=1, keepdim=True).expand(2, 4, 8, 12))
    assert (constant.abs() <= 3.0 + 1e-5).all()


def test_depth_normalisation_makes_the_output_scale_with_the_input() -> None:
    dagf = DAGFUpsampler().eval()
    inputs = make_inputs()
    with torch.no_grad():
        out = dagf(inputs)
        scaled = dagf(with_depth(inputs, 10 * inputs.low_res_depth))
    assert out.mean() > 1  # not collapsed to zero
    torch.testing.assert_close(scaled, 10 * out, rtol=1e-4, atol=1e-4 * out.abs().max().item())


def test_samples_are_independent_in_eval_mode() -> None:
    dagf = DAGFUpsampler().eval()
    inputs = make_inputs()
    depth = inputs.low_res_depth * torch.tensor([1.0, 1000.0]).view(2, 1, 1)
    with torch.no_grad():
        both = dagf(with_depth(inputs, depth))
        alone = [
            dagf(FusionInputs(inputs.frame[i : i + 1], inputs.context[i : i + 1], depth[i : i + 1]))
            for i in range(2)
        ]
    torch.testing.assert_close(both, torch.cat(alone), rtol=1e-5, atol=1e-3)


def test_gradients_reach_every_trainable_parameter() -> None:
    dagf = DAGFUpsampler().train()
    inputs = make_inputs()
    target = 50 * torch.ones(2, 32, 48)
    # At init the loss on the last output alone reaches every parameter (DDP needs that) ...
    F.l1_loss(dagf(inputs), target).backward()
    unused = [name for name, p in dagf.named_parameters() if p.grad is None]
    assert unused == []
    # ... and once the zero-initialised gates (adaptive norms' w1, head skips) are open and the
    # residual head's PReLU sees inputs of both signs, every gradient is non-zero.
    with torch.no_grad():
        for module in dagf.modules():
            if isinstance(module, AdaptiveNorm):
                module.w1.fill_(0.5)
        for level in dagf.filter_levels[1:]:
            level.head_skip_scale.fill_(0.5)
        seen = []
        hook = dagf.residual_head[0].register_forward_hook(lambda m, args, out: seen.append(out))
        dagf(inputs)
        hook.remove()
        dagf.residual_head[0].bias -= seen[-1].median()
    dagf.zero_grad()
    F.l1_loss(dagf(inputs), target).backward()
    zero = [name for name, p in dagf.named_parameters() if not p.grad.abs().sum() > 0]
    assert zero == []


def test_bad_configuration_and_missing_depth_are_reported() -> None:
    inputs = make_inputs()
    with pytest.raises(ValueError, match=r"low_res_depth .* got None"):
        DAGFUpsampler()(FusionInputs(inputs.frame, inputs.context))
    with pytest.raises(ValueError, match=r"\(N, h, w\), got \(2, 3, 32, 48\) and \(1, 8, 12\)"):
        DAGFUpsampler()(with_depth(inputs, inputs.low_res_depth[:1]))
    with pytest.raises(ValueError, match="dim must be 1, got 64"):
        DAGFUpsampler(dim=64)
    with pytest.raises(ValueError, match="features must be even"):
        DAGFUpsampler(features=31)


def test_compiled_module_matches_eager() -> None:
    dagf = DAGFUpsampler().eval()
    compiled = torch.compile(dagf, fullgraph=True, backend="aot_eager", dynamic=False)
    inputs = make_inputs(height=40, width=52, low_res=(10, 13))
    with torch.no_grad():
        torch.testing.assert_close(compiled(inputs), dagf(inputs), rtol=1e-5, atol=1e-4)
