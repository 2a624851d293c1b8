"""Tests for datamodules.network_input: the network input size and the frames fed to the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from datamodules.network_input import network_frames, resize_shape


@pytest.mark.parametrize(
    ("size", "kwargs", "expected"),
    [
        ((1080, 1920), {}, (518, 924)),  # DAv2 at 518
        ((1080, 1920), {"target": 1080, "long_side_max": 2044}, (1092, 1932)),  # 2K from 1080p
        ((60, 100), {"target": None}, (70, 112)),  # native size, rounded up
        ((1000, 3000), {"long_side_max": 1000}, (322, 994)),  # cap wins, rounded down
    ],
)
def test_resize_shape_keeps_the_aspect_in_multiples_of_14(
    size: tuple[int, int], kwargs: dict, expected: tuple[int, int]
) -> None:
    assert resize_shape(*size, **kwargs) == expected


def test_frames_at_network_size_are_bicubic_in_0_1_and_clamped() -> None:
    rgb = torch.zeros(2, 3, 32, 48, dtype=torch.uint8)
    rgb[:, :, :, 24:] = 255  # a hard edge: bicubic overshoots it
    rgb[1] //= 5
    image = network_frames(rgb, short_side=28)
    assert image.shape == (2, 3, 28, 42) and image.dtype == torch.float32
    expected = F.interpolate(rgb.float() / 255, size=(28, 42), mode="bicubic", align_corners=False)
    torch.testing.assert_close(image, expected.clamp(0, 1))
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0
    assert bool((expected < 0).any()) and bool((expected > 1).any())  # the clamp was needed


def test_frames_already_at_network_size_are_only_scaled_to_0_1() -> None:
    rgb = torch.arange(3 * 14 * 28, dtype=torch.int64).remainder(256).to(torch.uint8)
    rgb = rgb.reshape(1, 3, 14, 28)
    image = network_frames(rgb, short_side=None)
    torch.testing.assert_close(image, rgb.float() / 255, rtol=0, atol=0)
    image = network_frames(torch.zeros(1, 3, 1080, 1920, dtype=torch.uint8), 1080, 2044)
    assert image.shape == (1, 3, 1092, 1932)
