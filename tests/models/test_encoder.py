"""Tests of flashdepth.models.encoder: DINOv2 semantics on a timm ViT."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

import flashdepth.models.encoder as encoder_module
from flashdepth.models.encoder import (
    VIT_CONFIGS,
    DinoV2Encoder,
    check_input_size,
    interpolate_pos_embed,
)


def dinov2_pos_embed(pos_embed: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """DINOv2's rule, written out independently of the module under test."""
    dim = pos_embed.shape[-1]
    grid = pos_embed[:, 1:].reshape(1, 37, 37, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, scale_factor=((h + 0.1) / 37, (w + 0.1) / 37), mode="bicubic", antialias=False
    )
    assert grid.shape[-2:] == (h, w)
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)], dim=1)


@pytest.fixture(scope="module")
def vits() -> DinoV2Encoder:
    torch.manual_seed(0)
    model = DinoV2Encoder("vits").eval()
    with torch.no_grad():  # a strong pos-embed and LayerScale so every part matters
        model.pos_embed.normal_()
        for block in model.blocks:
            block.ls1.gamma.fill_(0.5)
            block.ls2.gamma.fill_(0.5)
    return model


@pytest.mark.parametrize("grid", [(5, 9), (40, 23)])
def test_interpolate_pos_embed_is_dinov2_rule_not_timm(grid: tuple[int, int]) -> None:
    pos_embed = torch.randn(1, 1 + 37 * 37, 16)
    h, w = grid
    ours = interpolate_pos_embed(pos_embed, grid)
    assert ours.shape == (1, 1 + h * w, 16)
    torch.testing.assert_close(ours, dinov2_pos_embed(pos_embed, h, w), rtol=0, atol=1e-6)
    assert torch.equal(ours[:, 0], pos_embed[:, 0])
    timm_default = resample_abs_pos_embed(pos_embed, new_size=grid, num_prefix_tokens=1)
    assert (ours - timm_default).abs().max() > 1e-3


def test_interpolate_pos_embed_native_grid_is_untouched() -> None:
    pos_embed = torch.randn(1, 1 + 37 * 37, 8)
    assert interpolate_pos_embed(pos_embed, (37, 37)) is pos_embed
    with pytest.raises(ValueError, match="not a square grid"):
        interpolate_pos_embed(torch.randn(1, 1 + 37 * 36, 8), (5, 9))


def manual_dinov2(
    model: DinoV2Encoder, image: torch.Tensor, pos_embed: torch.Tensor
) -> list[torch.Tensor]:
    """Patchify, class token, the given pos-embed, timm's blocks, final norm at 2, 5, 8, 11."""
    weight, bias = model.patch_embed.proj.weight, model.patch_embed.proj.bias
    patches = F.conv2d(image, weight, bias, stride=14)  # (B, C, h, w)
    batch = image.shape[0]
    tokens = torch.cat(
        [model.cls_token.expand(batch, -1, -1), patches.flatten(2).transpose(1, 2)], dim=1
    )
    tokens = tokens + pos_embed
    outputs = []
    for i, block in enumerate(model.blocks):
        tokens = block(tokens)
        if i in (2, 5, 8, 11):
            outputs.append(model.norm(tokens)[:, 1:])
    return outputs


def test_intermediate_layers_equal_manual_timm_blocks(vits: DinoV2Encoder) -> None:
    image = torch.randn(2, 3, 70, 126)
    with torch.no_grad():
        outputs = vits.get_intermediate_layers(image)
        expected = manual_dinov2(vits, image, dinov2_pos_embed(vits.pos_embed, 5, 9))
        timm_rule = manual_dinov2(
            vits, image, resample_abs_pos_embed(vits.pos_embed, new_size=(5, 9))
        )
    assert len(outputs) == 4
    for ours, reference in zip(outputs, expected, strict=True):
        assert ours.shape == (2, 5 * 9, 384)
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)
        # the final LayerNorm (default affine) was applied: zero mean per token
        torch.testing.assert_close(ours.mean(-1), torch.zeros(2, 45), rtol=0, atol=1e-4)
    assert (outputs[0] - timm_rule[0]).abs().max() > 1e-2  # the override matters


def test_intermediate_layers_select_blocks(vits: DinoV2Encoder) -> None:
    image = torch.randn(1, 3, 28, 42)
    with torch.no_grad():
        default = vits.get_intermediate_layers(image)
        chosen = vits.get_intermediate_layers(image, [11, 5])
    assert [t.shape for t in chosen] == [(1, 6, 384)] * 2
    torch.testing.assert_close(chosen[0], default[1])  # block order, not argument order
    torch.testing.assert_close(chosen[1], default[3])
    with pytest.raises(ValueError, match="0..11"):
        vits.get_intermediate_layers(image, [2, 12])


def test_input_not_multiple_of_14_is_rejected(vits: DinoV2Encoder) -> None:
    with pytest.raises(ValueError, match=r"70x127.*height 70, width 126 or 140"):
        vits.get_intermediate_layers(torch.randn(1, 3, 70, 127))
    with pytest.raises(ValueError, match=r"10x28.*height 14 or 14"):
        check_input_size(10, 28)
    with pytest.raises(ValueError, match="70x127"):
        vits.forward_features(torch.randn(1, 3, 70, 127))


def test_forward_features_uses_dinov2_pos_embed(vits: DinoV2Encoder) -> None:
    image = torch.randn(1, 3, 70, 126)
    with torch.no_grad():
        last = vits.get_intermediate_layers(image, [11])[0]
        features = vits.forward_features(image)
    assert features.shape == (1, 1 + 45, 384)
    torch.testing.assert_close(features[:, 1:], last)


def test_grad_checkpointing_is_used_and_exact(
    vits: DinoV2Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = torch.randn(1, 3, 28, 28)
    calls = []

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return torch.utils.checkpoint.checkpoint(function, *args, **kwargs)

    def grads() -> list[torch.Tensor]:
        vits.zero_grad()
        sum(t.square().mean() for t in vits.get_intermediate_layers(image)).backward()
        return [vits.blocks[0].attn.qkv.weight.grad.clone(), vits.pos_embed.grad.clone()]

    monkeypatch.setattr(encoder_module, "checkpoint", counting_checkpoint)
    plain = grads()
    assert calls == []
    vits.set_grad_checkpointing(True)
    try:
        recomputed = grads()
    finally:
        vits.set_grad_checkpointing(False)
    assert calls == [False] * 12
    for a, b in zip(plain, recomputed, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("variant", sorted(VIT_CONFIGS))
def test_layout_equals_timm_dinov2(variant: str) -> None:
    config = VIT_CONFIGS[variant]
    with torch.device("meta"):
        ours = DinoV2Encoder(variant)
        reference = timm.create_model(config.timm_name, pretrained=False, num_classes=0)
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert shapes["pos_embed"] == (1, 1370, config.embed_dim)
    assert sum(k.endswith("ls1.gamma") for k in shapes) == config.depth
    assert ours.norm.eps == 1e-6 and ours.blocks[0].norm1.eps == 1e-6


def test_vitg_swiglu_is_dinov2_w12_w3() -> None:
    with torch.device("meta"):
        model = DinoV2Encoder("vitg")
    mlp = model.blocks[0].mlp.to_empty(device="cpu")
    assert mlp.fc1.weight.shape == (8192, 1536) and mlp.fc2.weight.shape == (1536, 4096)
    with torch.no_grad():
        for parameter in mlp.parameters():
            parameter.normal_(std=0.02)
        x = torch.randn(2, 3, 1536)
        gate, value = F.linear(x, mlp.fc1.weight, mlp.fc1.bias).chunk(2, dim=-1)
        expected = F.linear(F.silu(gate) * value, mlp.fc2.weight, mlp.fc2.bias)
        torch.testing.assert_close(mlp(x), expected)


def test_official_dinov2_names_load() -> None:
    with torch.device("meta"):
        model = DinoV2Encoder("vitg")
    official = {}
    for key, value in model.state_dict().items():
        key = key.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")
        official[key] = value
    official["mask_token"] = torch.empty(1, 1536, device="meta")
    assert "blocks.39.mlp.w12.weight" in official
    result = model.load_state_dict(official, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert "mask_token" in official  # the caller's dict is left as it was


def test_unknown_variant_lists_choices() -> None:
    with pytest.raises(ValueError, match=r"'vith'.*\['vitb', 'vitg', 'vitl', 'vits'\]"):
        DinoV2Encoder("vith")
