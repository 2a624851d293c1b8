"""Tests of flashdepth.models.depth_anything: shapes, hooks and the official key layout."""

from __future__ import annotations

import pytest
import torch

from flashdepth.models.contract import StreamingDepthModel
from flashdepth.models.depth_anything import DepthAnythingV2
from tests.official_layout import VIT, dav2_shapes


def to_timm_name(key: str) -> str:
    return key.replace("mlp.w12.", "mlp.fc1.").replace("mlp.w3.", "mlp.fc2.")


@pytest.mark.parametrize("encoder", ["vits", "vitb", "vitl", "vitg"])
def test_state_dict_is_the_official_layout(encoder: str) -> None:
    with torch.device("meta"):
        model = DepthAnythingV2(encoder)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert set(ours) <= {f"pretrained.{k}" for k in model.pretrained.state_dict()} | {
        f"depth_head.{k}" for k in model.depth_head.state_dict()
    }
    official = dav2_shapes(encoder)
    extra = {k for k in official if to_timm_name(k) not in ours}
    assert extra == {"pretrained.mask_token"}
    assert {to_timm_name(k): v for k, v in official.items() if k not in extra} == ours
    assert model.features == VIT[encoder][2] and model.encoder_name == encoder

    checkpoint = {k: torch.empty(shape, device="meta") for k, shape in official.items()}
    result = model.load_state_dict(checkpoint, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.fixture(scope="module")
def vits() -> DepthAnythingV2:
    torch.manual_seed(0)
    return DepthAnythingV2("vits").eval()


@pytest.mark.parametrize("encoder", ["vits", "vitb"])
def test_forward_gives_non_negative_inverse_depth_at_input_size(
    encoder: str, vits: DepthAnythingV2
) -> None:
    model = vits if encoder == "vits" else DepthAnythingV2(encoder).eval()
    with torch.no_grad():
        depth = model(torch.randn(1, 3, 70, 126))
    assert depth.shape == (1, 70, 126)
    assert torch.isfinite(depth).all() and depth.min() >= 0


def test_forward_is_encode_then_decode(vits: DepthAnythingV2) -> None:
    image = torch.randn(1, 3, 70, 126)
    with torch.no_grad():
        features, patch_h, patch_w = vits.encode(image)
        assert (patch_h, patch_w) == (5, 9)
        assert [f.shape for f in features] == [(1, 45, 384)] * 4
        reference = vits.depth_head(
            vits.pretrained.get_intermediate_layers(image, [2, 5, 8, 11]), 5, 9
        ).squeeze(1)
        torch.testing.assert_close(vits(image), reference, rtol=0, atol=0)
        layers, patch_h, patch_w = vits.encode_layers(image)
        head = vits.depth_head
        stages = [head.path_4(layers)]
        stages.append(head.path_3(stages[-1], layers))
        stages.append(head.path_2(stages[-1], layers))
        stages.append(head.path_1(stages[-1], layers))
        staged = head.head(stages[-1], patch_h, patch_w).squeeze(1)
    torch.testing.assert_close(staged, reference, rtol=0, atol=0)
    assert [tuple(x.shape[-2:]) for x in stages] == [(5, 9), (10, 18), (20, 36), (40, 72)]


def test_per_frame_model_satisfies_the_streaming_contract(vits: DepthAnythingV2) -> None:
    clip = torch.randn(2, 3, 3, 42, 56)
    assert isinstance(vits, StreamingDepthModel)
    assert vits.weight_parts() == {}
    groups = vits.parameter_groups()
    assert set(groups) == {"vit", "dpt"}
    assert sum(len(g) for g in groups.values()) == len(list(vits.parameters()))
    with torch.no_grad():
        whole = vits(clip)
        state = vits.init_state(2, image_size=(42, 56))
        assert state.shape == (2, 0)
        for t in range(3):
            depth, state = vits.step(clip[:, t], state)
            torch.testing.assert_close(depth, whole[:, t], rtol=0, atol=1e-6)
            torch.testing.assert_close(depth, vits(clip[:, t]), rtol=0, atol=0)
        assert state.shape == (2, 0)


def test_official_checkpoint_values_load() -> None:
    official = {k: torch.randn(shape) for k, shape in dav2_shapes("vits").items()}
    with torch.device("meta"):
        model = DepthAnythingV2("vits")
    model.load_state_dict(official, strict=True, assign=True)
    assert not any(t.is_meta for t in model.state_dict().values())
    assert torch.equal(
        model.pretrained.blocks[3].mlp.fc1.weight, official["pretrained.blocks.3.mlp.fc1.weight"]
    )
    assert torch.equal(
        model.depth_head.scratch.refinenet4.resConfUnit1.conv2.bias,
        official["depth_head.scratch.refinenet4.resConfUnit1.conv2.bias"],
    )


def test_bad_input_is_explained(vits: DepthAnythingV2) -> None:
    with pytest.raises(ValueError, match=r"70x130.*width 126 or 140"):
        vits(torch.randn(1, 3, 70, 130))
    with pytest.raises(ValueError, match=r"clip \(B, T, 3, H, W\), got shape \(3, 70, 126\)"):
        vits(torch.randn(3, 70, 126))
    with pytest.raises(ValueError, match="choose one of"):
        DepthAnythingV2("vit_small")


def test_set_grad_checkpointing_reaches_encoder_and_decoder(vits: DepthAnythingV2) -> None:
    vits.set_grad_checkpointing(True)
    assert vits.pretrained.grad_checkpointing and vits.depth_head.grad_checkpointing
    vits.set_grad_checkpointing(False)
    assert not vits.pretrained.grad_checkpointing and not vits.depth_head.grad_checkpointing
