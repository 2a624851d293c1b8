"""Named presets: every preset builds with the documented architecture and output shape."""

from __future__ import annotations

import pytest
import torch

import flashdepth
from flashdepth.checkpoints import CheckpointMismatchError
from flashdepth.fusion import DAGFUpsampler, UNetUpsampler
from flashdepth.models.flashdepth import FlashDepth
from flashdepth.models.hybrid import FlashDepthHybrid
from flashdepth.models.upsampled import LowResolutionUpsampler
from flashdepth.temporal import GRUTemporal, IdentityTemporal, MambaTemporal

PRESETS = {  # name -> (encoder, stage, temporal class, DPT width)
    "depth-anything-v2-vits": ("vits", None, None, 64),
    "depth-anything-v2-vitb": ("vitb", None, None, 128),
    "depth-anything-v2-vitl": ("vitl", None, None, 256),
    "depth-anything-v2-vitg": ("vitg", None, None, 384),
    "flashdepth-s": ("vits", 1, MambaTemporal, 64),
    "flashdepth-s-gru": ("vits", 1, GRUTemporal, 64),
    "flashdepth-s-none": ("vits", 1, IdentityTemporal, 64),
    "flashdepth-l": ("vitl", 3, MambaTemporal, 256),
    "flashdepth-l-gru": ("vitl", 3, GRUTemporal, 256),
    "flashdepth-l-none": ("vitl", 3, IdentityTemporal, 256),
    "flashdepth-full": ("vits", 1, MambaTemporal, 64),
}
#: Presets whose student/low-resolution model differs from the FlashDepth above.
HOSTS = {"flashdepth-l-unet": UNetUpsampler, "flashdepth-l-dagf": DAGFUpsampler}
SMALL = {"depth-anything-v2-vits", "flashdepth-s", "flashdepth-s-gru", "flashdepth-s-none"}


def test_list_models() -> None:
    assert flashdepth.list_models() == sorted([*PRESETS, *HOSTS])
    assert flashdepth.list_models("flashdepth-l*") == [
        "flashdepth-l",
        "flashdepth-l-dagf",
        "flashdepth-l-gru",
        "flashdepth-l-none",
        "flashdepth-l-unet",
    ]
    with pytest.raises(KeyError, match="available: depth-anything-v2-vitb"):
        flashdepth.create_model("flashdepth-xl")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_architecture_and_output_shape(name: str) -> None:
    encoder, stage, temporal_cls, width = PRESETS[name]
    # big encoders are built and run on the meta device: shapes without compute
    device = "cpu" if name in SMALL else "meta"
    with torch.device(device):
        model = flashdepth.create_model(name).eval()
        assert model.encoder_name == encoder and model.features == width
        if stage is None:
            assert not isinstance(model, FlashDepth)
            out = model(torch.randn(2, 3, 70, 126))
            assert out.shape == (2, 70, 126)
            assert model(torch.randn(2, 3, 3, 70, 126)).shape == (2, 3, 70, 126)
        else:
            assert isinstance(model, FlashDepth) and model.stage == stage
            assert isinstance(model.temporal, temporal_cls) and model.temporal.dim == width
            with torch.no_grad():
                out = model(torch.randn(2, 3, 3, 70, 126))
            assert out.shape == (2, 3, 70, 126)
    if device == "cpu":
        assert bool((out >= 0).all())


def test_mamba_configs_of_released_presets() -> None:
    with torch.device("meta"):
        large = flashdepth.create_model("flashdepth-l")
    small = flashdepth.create_model("flashdepth-s")
    assert small.state_dict()["temporal.blocks.3.mamba.in_proj.weight"].shape == (1032, 64)
    assert large.state_dict()["temporal.blocks.3.mamba.in_proj.weight"].shape == (1544, 256)
    assert small.temporal.init_state(1, None).shape[2:] == (8, 32, 256)
    assert large.temporal.init_state(1, None).shape[2:] == (8, 64, 256)


@pytest.mark.parametrize(("name", "upsampler"), sorted(HOSTS.items()))
def test_upsampler_presets_freeze_a_released_flashdepth_l(name: str, upsampler: type) -> None:
    with torch.device("meta"):
        model = flashdepth.create_model(name)
    assert isinstance(model, LowResolutionUpsampler) and isinstance(model.fusion, upsampler)
    assert isinstance(model.low_res, FlashDepth) and model.low_res.encoder_name == "vitl"
    assert model.low_res.stage == 3 and model.resolution == 518
    assert not any(p.requires_grad for p in model.low_res.parameters())
    assert set(model.parameter_groups()) == {"fusion"}


def test_overrides_reach_the_constructor() -> None:
    with torch.device("meta"):
        model = flashdepth.create_model("flashdepth-full", teacher_resolution=518, num_blocks=2)
    assert isinstance(model, FlashDepthHybrid)
    assert model.teacher_resolution == 518 and len(model.fusion.blocks) == 2
    with pytest.raises(TypeError, match=r"flashdepth-s \(FlashDepth\) has no argument.*'blocks'"):
        flashdepth.create_model("flashdepth-s", blocks=2)


def test_strict_false_loads_the_weights_that_fit(tmp_path) -> None:
    with torch.device("meta"):
        model = flashdepth.create_model("depth-anything-v2-vits")
    kept = "depth_head.scratch.output_conv2.2.weight"  # (1, 32, 1, 1) in the model
    state = {k: torch.full(v.shape, 0.5) for k, v in model.state_dict().items()}
    state[kept] = torch.full((1, 16, 3, 3), 0.5)
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "changed.pth"
    torch.save(state, path)
    with torch.device("meta"), pytest.raises(CheckpointMismatchError) as caught:
        flashdepth.create_model("depth-anything-v2-vits", weights=path)
    assert caught.value.unexpected == ["extra.weight"]
    assert caught.value.mismatched == [(kept, (1, 16, 3, 3), (1, 32, 1, 1))]

    model = flashdepth.create_model("depth-anything-v2-vits", weights=path, strict=False)
    assert not model.training
    for key, value in model.state_dict().items():  # loaded: 0.5; kept: its random initialisation
        assert bool((value == 0.5).all()) is (key != kept), key
