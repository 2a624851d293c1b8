"""FlashDepth: DAv2 equivalence at zero init, streaming == clip, gradients through time."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from flashdepth.models.depth_anything import DepthAnythingV2
from flashdepth.models.flashdepth import FlashDepth
from flashdepth.temporal import GRUTemporal, IdentityTemporal, MambaTemporal

H, W, T = 70, 126, 3


def small_temporal(kind: str) -> Callable[[int], torch.nn.Module]:
    """A temporal factory (the model gives the width)."""
    if kind == "mamba":  # the released S configuration with a small state for speed
        return partial(MambaTemporal, expand=4, headdim=32, d_state=16, chunk_size=8)
    if kind == "gru":
        return GRUTemporal
    return IdentityTemporal


def randomise_output(model: FlashDepth) -> None:
    """Give the zero-initialised output layer weights so the temporal path matters."""
    with torch.no_grad():
        model.temporal_out[1].weight.normal_(0, 0.5)
        model.temporal_out[1].bias.normal_(0, 0.5)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.randn(2, T, 3, H, W, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["mamba", "gru", "none"])
def test_zero_initialised_flashdepth_equals_dav2(kind: str, clip: torch.Tensor) -> None:
    flash = FlashDepth("vits", small_temporal(kind), stage=1).eval()
    dav2 = DepthAnythingV2("vits").eval()
    own = flash.state_dict()
    dav2.load_state_dict({k: v for k, v in own.items() if k in dav2.state_dict()})
    with torch.no_grad():
        expected = torch.stack([dav2(clip[:, t]) for t in range(T)], dim=1)
        torch.testing.assert_close(dav2(clip), expected, atol=1e-6, rtol=0)  # clip form
        assert expected.std() > 1e-3 and bool((expected > 0).all())  # a non-degenerate output
        assert torch.allclose(flash(clip), expected, atol=1e-6, rtol=0)
        state = flash.init_state(2, image_size=(H, W))
        for t in range(T):
            depth, state = flash.step(clip[:, t], state)
            assert torch.allclose(depth, expected[:, t], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["mamba", "gru", "none"])
@pytest.mark.parametrize("stage", [0, 1, 3])
def test_streaming_equals_clip(kind: str, stage: int, clip: torch.Tensor) -> None:
    model = FlashDepth("vits", small_temporal(kind), stage=stage).eval()
    randomise_output(model)
    with torch.no_grad():
        whole = model(clip)
        state = model.init_state(2, image_size=(H, W))
        frames = []
        for t in range(T):
            depth, state = model.step(clip[:, t], state)
            frames.append(depth)
    streamed = torch.stack(frames, dim=1)
    assert whole.shape == (2, T, H, W)
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=0)
    if kind != "none":  # the carried state changes later frames: frame 2 alone differs
        with torch.no_grad():
            alone, _ = model.step(clip[:, 2], model.init_state(2, image_size=(H, W)))
        assert (alone - whole[:, 2]).abs().max() > 1e-4


def test_chunked_stream_with_state_equals_clip(clip: torch.Tensor) -> None:
    model = FlashDepth("vits", small_temporal("mamba")).eval()
    randomise_output(model)
    with torch.no_grad():
        whole = model(clip)
        first, state = model.forward_with_state(clip[:, :2], model.init_state(2, image_size=(H, W)))
        rest, _ = model.forward_with_state(clip[:, 2:], state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["mamba", "gru"])
def test_gradient_flows_through_time(kind: str, clip: torch.Tensor) -> None:
    model = FlashDepth("vits", small_temporal(kind)).train()
    randomise_output(model)
    frames = clip[:1].clone().requires_grad_(True)
    loss = model(frames)[:, -1].square().mean()  # a loss on the last frame only
    loss.backward()
    # frame 0 reaches the last frame only through the carried state
    assert frames.grad[:, 0].abs().sum() > 0
    full = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    # the same loss with the state cut before the last frame: the through-time part vanishes
    model.zero_grad()
    with torch.no_grad():
        _, state = model.forward_with_state(frames[:, :-1], model.init_state(1, image_size=(H, W)))
    depth, _ = model.forward_with_state(frames[:, -1:], state)
    depth.square().mean().backward()
    through_time = {
        n: (full[n] - p.grad).abs().max().item()
        for n, p in model.named_parameters()
        if n.startswith("temporal.") and p.grad is not None
    }
    assert max(through_time.values()) > 0
    # encoder weights also get gradient from earlier frames via the state
    name = "pretrained.blocks.0.attn.qkv.weight"
    truncated = dict(model.named_parameters())[name].grad
    assert (full[name] - truncated).abs().max() > 0


def test_temporal_residual_matches_its_definition() -> None:
    """F' = F + Out(Up(T(Pool(F)))) with Pool to int(0.1 * size) and align_corners=True."""
    model = FlashDepth("vits", IdentityTemporal, stage=1)
    randomise_output(model)
    features = torch.randn(2, 64, 30, 52)
    state = model.init_state(2)
    out, _ = model.temporal_at(1, features, 2, 1, state)
    pooled = F.adaptive_avg_pool2d(features, (3, 5))
    up = F.interpolate(pooled, (30, 52), mode="bilinear", align_corners=True)
    linear = model.temporal_out[1]
    expected = features + torch.einsum("bchw,dc->bdhw", F.gelu(up), linear.weight)
    expected = expected + linear.bias[None, :, None, None]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # every other stage passes the features through untouched
    for other in (0, 2, 3):
        assert model.temporal_at(other, features, 2, 1, state)[0] is features


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_pooled_grid_is_the_grid_the_temporal_component_sees(stage: int) -> None:
    model = FlashDepth("vits", GRUTemporal, stage=stage)
    seen = []
    model.temporal.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-2:]))
    with torch.no_grad():
        model(torch.randn(1, 1, 3, 126, 196))
    assert tuple(seen[0]) == model.pooled_grid((126, 196))
    patch = (126 // 14 * 2**stage, 196 // 14 * 2**stage)
    assert model.pooled_grid((126, 196)) == (max(1, int(patch[0] * 0.1)), int(patch[1] * 0.1))


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="dim 64 \\(the DPT width of encoder 'vits'\\)"):
        FlashDepth("vits", lambda dim: GRUTemporal(256))
    with pytest.raises(ValueError, match="stage must be 0..3"):
        FlashDepth("vits", IdentityTemporal, stage=4)
    model = FlashDepth("vits", IdentityTemporal)
    with pytest.raises(ValueError, match=r"clip \(B, T, 3, H, W\)"):
        model(torch.zeros(1, 3, 14, 14))
    with pytest.raises(ValueError, match="one frame"):
        model.step(torch.zeros(1, 1, 3, 14, 14), model.init_state(1, image_size=(H, W)))


def test_default_temporal_is_the_released_mamba() -> None:
    model = FlashDepth("vits")
    assert isinstance(model.temporal, MambaTemporal)
    assert model.state_dict()["temporal.blocks.0.mamba.in_proj.weight"].shape == (1032, 64)
    large = FlashDepth("vitl", stage=3)
    assert large.state_dict()["temporal.blocks.0.mamba.in_proj.weight"].shape == (1544, 256)


def test_parameter_groups_partition_the_parameters() -> None:
    model = FlashDepth("vits", GRUTemporal)
    groups = model.parameter_groups()
    assert set(groups) == {"vit", "dpt", "temporal"}
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in groups["temporal"]} == {
        id(p) for n, p in model.named_parameters() if n.startswith(("temporal.", "temporal_out."))
    }


def test_gru_state_needs_the_image_size() -> None:
    model = FlashDepth("vits", GRUTemporal)
    with pytest.raises(ValueError, match="image_size"):
        model.init_state(1)
    assert model.init_state(3, image_size=(70, 126)).shape == (3, 64, 1, 1)
