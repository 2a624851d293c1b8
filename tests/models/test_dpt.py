"""Tests of flashdepth.models.dpt: DAv2's DPT head, stage by stage."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import flashdepth.models.dpt as dpt_module
from flashdepth.models.dpt import DPTDecoder, FeatureFusionBlock, ResidualConvUnit

PH, PW = 5, 9  # patch grid of a 70x126 image


@pytest.fixture(scope="module")
def decoder() -> DPTDecoder:
    torch.manual_seed(0)
    return DPTDecoder(in_channels=32, features=16, out_channels=(8, 12, 20, 24)).eval()


@pytest.fixture
def features() -> list[torch.Tensor]:
    return [torch.randn(2, PH * PW, 32) for _ in range(4)]


def expected_keys(features: int = 16) -> dict[str, tuple[int, ...]]:
    """DAv2's ``depth_head.*`` layout (prefix stripped) for in=32, out=(8, 12, 20, 24)."""
    out = (8, 12, 20, 24)
    keys: dict[str, tuple[int, ...]] = {}
    for i, c in enumerate(out):
        keys[f"projects.{i}.weight"] = (c, 32, 1, 1)
        keys[f"projects.{i}.bias"] = (c,)
        keys[f"scratch.layer{i + 1}_rn.weight"] = (features, c, 3, 3)
    for i, (c, k) in {0: (8, 4), 1: (12, 2), 3: (24, 3)}.items():
        keys[f"resize_layers.{i}.weight"] = (c, c, k, k)
        keys[f"resize_layers.{i}.bias"] = (c,)
    for n in range(1, 5):
        for unit in ("resConfUnit1", "resConfUnit2"):
            for conv in ("conv1", "conv2"):
                keys[f"scratch.refinenet{n}.{unit}.{conv}.weight"] = (features, features, 3, 3)
                keys[f"scratch.refinenet{n}.{unit}.{conv}.bias"] = (features,)
        keys[f"scratch.refinenet{n}.out_conv.weight"] = (features, features, 1, 1)
        keys[f"scratch.refinenet{n}.out_conv.bias"] = (features,)
    keys["scratch.output_conv1.weight"] = (features // 2, features, 3, 3)
    keys["scratch.output_conv1.bias"] = (features // 2,)
    keys["scratch.output_conv2.0.weight"] = (32, features // 2, 3, 3)
    keys["scratch.output_conv2.0.bias"] = (32,)
    keys["scratch.output_conv2.2.weight"] = (1, 32, 1, 1)
    keys["scratch.output_conv2.2.bias"] = (1,)
    return keys


def test_state_dict_layout_is_dav2(decoder: DPTDecoder) -> None:
    shapes = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    assert shapes == expected_keys()
    assert "scratch.refinenet4.resConfUnit1.conv1.weight" in shapes


def test_stages_compose_to_forward_at_dpt_sizes(
    decoder: DPTDecoder, features: list[torch.Tensor]
) -> None:
    with torch.no_grad():
        layers = decoder.reassemble(features, PH, PW)
        assert [tuple(x.shape) for x in layers] == [
            (2, 16, 4 * PH, 4 * PW),
            (2, 16, 2 * PH, 2 * PW),
            (2, 16, PH, PW),
            (2, 16, 3, 5),  # stride-2 conv rounds up
        ]
        path_4 = decoder.path_4(layers)
        path_3 = decoder.path_3(path_4, layers)
        path_2 = decoder.path_2(path_3, layers)
        path_1 = decoder.path_1(path_2, layers)
        depth = decoder.head(path_1, PH, PW)
        assert [p.shape[-2:] for p in (path_4, path_3, path_2, path_1)] == [
            (PH, PW),
            (2 * PH, 2 * PW),
            (4 * PH, 4 * PW),
            (8 * PH, 8 * PW),
        ]
        assert depth.shape == (2, 1, 14 * PH, 14 * PW)
        torch.testing.assert_close(decoder(features, PH, PW), depth, rtol=0, atol=0)


def test_path_4_from_the_deepest_map_alone_equals_the_full_reassembly(
    decoder: DPTDecoder, features: list[torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    with torch.no_grad():
        expected = decoder.path_4(decoder.reassemble(features, PH, PW))
        # only projects[3], resize_layers[3] and layer4_rn run (what a hybrid teacher needs)
        for level in range(3):
            monkeypatch.setattr(decoder.projects[level], "forward", lambda x: pytest.fail())
        deepest = decoder.path_4_from_deepest(features[3], PH, PW)
    torch.testing.assert_close(deepest, expected, rtol=0, atol=0)
    assert deepest.shape == (2, 16, PH, PW)


def test_head_splits_into_features_and_depth(
    decoder: DPTDecoder, features: list[torch.Tensor]
) -> None:
    with torch.no_grad():
        layers = decoder.reassemble(features, PH, PW)
        path_1 = decoder.path_1(
            decoder.path_2(decoder.path_3(decoder.path_4(layers), layers), layers), layers
        )
        head = decoder.head_features(path_1)
        depth = decoder.depth_from_head_features(head, PH, PW)
    assert head.shape == (2, 8, 8 * PH, 8 * PW)  # features/2 channels at path_1's size
    torch.testing.assert_close(depth, decoder.head(path_1, PH, PW), rtol=0, atol=0)


def test_fusion_block_follows_dav2() -> None:
    block = FeatureFusionBlock(4)
    x, skip = torch.randn(1, 4, 3, 5), torch.randn(1, 4, 3, 5)
    skip_before = skip.clone()

    def unit(u: ResidualConvUnit, t: torch.Tensor) -> torch.Tensor:
        return t + u.conv2(F.relu(u.conv1(F.relu(t))))

    with torch.no_grad():
        fused = unit(block.resConfUnit2, x + unit(block.resConfUnit1, skip))
        up = F.interpolate(fused, size=(7, 11), mode="bilinear", align_corners=True)
        torch.testing.assert_close(block(x, skip, size=(7, 11)), block.out_conv(up))
        doubled = F.interpolate(
            unit(block.resConfUnit2, x), scale_factor=2, mode="bilinear", align_corners=True
        )
        torch.testing.assert_close(block(x), block.out_conv(doubled))
    assert torch.equal(skip, skip_before)  # ReLU is not applied in place


def test_head_output_is_non_negative(decoder: DPTDecoder, features: list[torch.Tensor]) -> None:
    with torch.no_grad():
        assert decoder(features, PH, PW).min() >= 0


def test_grad_checkpointing_is_used_and_exact(
    decoder: DPTDecoder, features: list[torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return torch.utils.checkpoint.checkpoint(function, *args, **kwargs)

    def grads() -> torch.Tensor:
        decoder.zero_grad()
        decoder(features, PH, PW).mean().backward()
        return decoder.scratch.refinenet3.resConfUnit1.conv1.weight.grad.clone()

    monkeypatch.setattr(dpt_module, "checkpoint", counting_checkpoint)
    plain = grads()
    decoder.set_grad_checkpointing(True)
    try:
        recomputed = grads()
    finally:
        decoder.set_grad_checkpointing(False)
    assert calls == [False] * 4
    torch.testing.assert_close(plain, recomputed)


def test_bad_inputs_are_explained(decoder: DPTDecoder, features: list[torch.Tensor]) -> None:
    with pytest.raises(ValueError, match="4 token maps, got 3"):
        decoder(features[:3], PH, PW)
    with pytest.raises(ValueError, match="45 tokens, expected .* 5\\*8 = 40"):
        decoder(features, 5, 8)
    with pytest.raises(ValueError, match="4 out_channels"):
        DPTDecoder(32, 16, (8, 12, 20))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fresh_head_is_not_dead_behind_its_final_relu(seed: int) -> None:
    torch.manual_seed(seed)
    decoder = DPTDecoder(384, 64, (48, 96, 192, 384))
    features = [torch.randn(1, 5 * 9, 384) for _ in range(4)]
    depth = decoder(features, 5, 9)
    assert bool((depth > 0).all())  # every pixel passes the ReLU, so every pixel has gradient
    depth.mean().backward()
    assert decoder.scratch.output_conv2[0].weight.grad.abs().sum() > 0
