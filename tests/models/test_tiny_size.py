"""The tiny test size ``vitt``: timm's ViT shrunk, accepted everywhere, offered with no weights.

It is built through timm like the released sizes, accepted wherever an encoder name is, and far
smaller than ViT-S.

The glue tests (command line, task, resume, DDP, inference, export, evaluation) run on it;
the tests of the architecture itself keep the real ViT-S.
"""

from __future__ import annotations

import pytest
import timm
import torch

import flashdepth
from flashdepth.checkpoints import registry
from flashdepth.models.depth_anything import DepthAnythingV2
from flashdepth.models.encoder import TEST_VIT_CONFIGS, VIT_CONFIGS, DinoV2Encoder, vit_config
from flashdepth.models.flashdepth import FlashDepth
from flashdepth.models.upsampled import LowResolutionUpsampler
from flashdepth.temporal import MambaTemporal

TINY = TEST_VIT_CONFIGS["vitt"]


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_tiny_vit_is_timms_dinov2_vit_shrunk() -> None:
    with torch.device("meta"):
        ours = DinoV2Encoder("vitt")
        reference = timm.create_model(
            TINY.timm_name,
            pretrained=False,
            num_classes=0,
            embed_dim=TINY.embed_dim,
            depth=TINY.depth,
            num_heads=TINY.num_heads,
        )
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert shapes["pos_embed"] == (1, 1370, 48)  # the 37x37 DINOv2 grid, 48 channels
    assert len(ours.blocks) == 4 and ours.layer_indices == (0, 1, 2, 3)


def test_the_tiny_size_runs_and_has_a_sixtieth_of_vit_s_parameters() -> None:
    model = DepthAnythingV2("vitt").eval()
    with torch.no_grad():
        depth = model(torch.randn(2, 3, 28, 42))
    assert depth.shape == (2, 28, 42) and torch.isfinite(depth).all() and (depth >= 0).all()
    assert model.features == 32
    assert parameters(model.pretrained) == 207_648
    assert parameters(model) == 427_041
    with torch.device("meta"):
        small = DepthAnythingV2("vits")
    assert parameters(small) == 24_784_705  # the released 24.8 M
    assert parameters(small) > 55 * parameters(model)


def test_the_temporal_width_follows_the_tiny_dpt_and_the_state_is_carried() -> None:
    model = FlashDepth("vitt").eval()  # the default temporal component: ViT-S's Mamba
    assert isinstance(model.temporal, MambaTemporal) and model.temporal.dim == 32
    torch.nn.init.normal_(model.temporal_out[1].weight, std=0.5)  # make the state matter
    clip = torch.randn(1, 3, 3, 28, 42)
    with torch.no_grad():
        whole = model(clip)
        state = model.init_state(1)
        steps = []
        for frame in clip.unbind(1):
            depth, state = model.step(frame, state)
            steps.append(depth)
    assert whole.shape == (1, 3, 28, 42)
    torch.testing.assert_close(torch.stack(steps, dim=1), whole, rtol=1e-4, atol=1e-4)
    assert parameters(model) == 590_577


def test_every_preset_accepts_the_tiny_encoder() -> None:
    """The Mamba of both released sizes fits the tiny DPT width: no other override."""
    for name in flashdepth.list_models():
        overrides = {"encoder": "vitt"}
        if name == "flashdepth-full":
            overrides["teacher_encoder"] = "vitt"
        with torch.device("meta"):
            model = flashdepth.create_model(name, **overrides)
        network = model.low_res if isinstance(model, LowResolutionUpsampler) else model
        assert network.encoder_name == "vitt" and network.features == 32, name
        if isinstance(network, FlashDepth):
            assert network.temporal.dim == 32, name
        # the upsamplers' own layers dominate the largest (DAGF: 2.98 M in all)
        assert parameters(model) < 3_000_000, name
    with torch.device("meta"):
        hybrid = flashdepth.create_model("flashdepth-full", encoder="vitt", teacher_encoder="vitt")
    assert hybrid.teacher.features == 32 and parameters(hybrid) == 1_055_890


def test_the_tiny_size_is_no_released_model() -> None:
    assert "vitt" not in VIT_CONFIGS  # the released Depth Anything V2 sizes
    assert vit_config("vitt") is TINY
    assert not [name for name in flashdepth.list_models() if "vitt" in name or "tiny" in name]
    for entry in registry().values():
        assert "vitt" not in entry["name"] and "vitt" not in entry["file"]
        assert entry["preset"] is None or flashdepth.list_models(entry["preset"])


def test_an_unknown_encoder_lists_the_released_sizes_and_the_test_size() -> None:
    with pytest.raises(ValueError) as caught:
        DinoV2Encoder("vith")
    assert "'vith'; choose one of ['vitb', 'vitg', 'vitl', 'vits']" in str(caught.value)
    assert "(or, for tests and debugging without released weights, ['vitt'])" in str(caught.value)
