"""Tests for datamodules.augment: one crop/flip/colour per clip, targets follow the geometry."""

from __future__ import annotations

import pytest
import torch

from datamodules.augment import ClipAugment


def _clip(frames: int = 4, height: int = 32, width: int = 48) -> tuple[torch.Tensor, ...]:
    """A clip of identical frames with a texture, inverse depth with a marker and a hole."""
    generator = torch.Generator().manual_seed(1)
    frame = torch.rand(3, height, width, generator=generator)
    image = frame.expand(frames, 3, height, width).clone()
    inverse_depth = torch.full((frames, height, width), 0.5)
    valid = torch.ones(frames, height, width, dtype=torch.bool)
    return image, inverse_depth, valid


def test_identical_frames_stay_identical_under_random_parameters() -> None:
    augment = ClipAugment((24, 24), flip_p=0.5, jitter=0.4, hue=0.1)
    image, inverse_depth, valid = _clip()
    for seed in range(6):
        out_image, out_depth, out_valid = augment(
            image, inverse_depth, valid, generator=torch.Generator().manual_seed(seed)
        )
        assert out_image.shape == (4, 3, 24, 24)
        assert out_depth.shape == out_valid.shape == (4, 24, 24)
        assert out_image.dtype == torch.float32 and out_valid.dtype == torch.bool
        assert float(out_image.min()) >= 0.0 and float(out_image.max()) <= 1.0
        for t in range(1, 4):
            assert torch.equal(out_image[t], out_image[0])
            assert torch.equal(out_depth[t], out_depth[0])
            assert torch.equal(out_valid[t], out_valid[0])


def test_parameters_change_between_clips() -> None:
    augment = ClipAugment((24, 24), flip_p=0.5, jitter=0.4, hue=0.1)
    image, inverse_depth, valid = _clip()
    generator = torch.Generator().manual_seed(0)
    outputs = [augment(image, inverse_depth, valid, generator=generator)[0] for _ in range(4)]
    assert not all(torch.equal(outputs[0], other) for other in outputs[1:])


def test_depth_and_valid_follow_crop_and_flip_but_not_colour() -> None:
    image, inverse_depth, valid = _clip(frames=2)
    # marker: one bright red pixel whose inverse depth is 2 1/m, and an invalid pixel beside it
    image[:, :, 10, 30] = torch.tensor([1.0, 0.0, 0.0])
    inverse_depth[:, 10, 30] = 2.0
    valid[:, 10, 31] = False
    inverse_depth[:, 10, 31] = 0.0
    # target (32, 32) of a 32x48 clip: no resampling, every crop keeps columns 16..31
    augment = ClipAugment((32, 32), flip_p=0.5, jitter=0.0, hue=0.0)
    flipped = []
    for seed in range(12):
        out_image, out_depth, out_valid = augment(
            image, inverse_depth, valid, generator=torch.Generator().manual_seed(seed)
        )
        marker = torch.nonzero(out_depth == 2.0).tolist()
        holes = torch.nonzero(~out_valid).tolist()
        assert [t for t, _, _ in marker] == [t for t, _, _ in holes] == [0, 1]
        _, row, col = marker[0]
        _, hole_row, hole_col = holes[0]
        assert torch.equal(out_image[:, :, row, col], torch.tensor([[1.0, 0.0, 0.0]] * 2))
        assert hole_row == row and abs(hole_col - col) == 1
        flipped.append(hole_col == col - 1)
    assert any(flipped) and not all(flipped)


def test_resize_uses_nearest_so_no_value_is_invented() -> None:
    image, inverse_depth, valid = _clip(frames=1, height=40, width=60)
    inverse_depth[:, :, :30] = 1.0  # a sharp occlusion edge: 1 1/m left, 0.5 1/m right
    valid[:, 5:9, 5:9] = False
    out_image, out_depth, out_valid = ClipAugment((20, 20), flip_p=0.0, jitter=0.0, hue=0.0)(
        image, inverse_depth, valid
    )
    assert set(out_depth.unique().tolist()) <= {0.5, 1.0}
    assert 0 < int(out_valid.logical_not().sum()) < 20 * 20


def test_center_crop_without_augmentation_is_deterministic() -> None:
    image, inverse_depth, valid = _clip(frames=2, height=32, width=48)
    augment = ClipAugment((32, 32), flip_p=0.0, jitter=0.0, hue=0.0, random_crop=False)
    out_image, _, _ = augment(image, inverse_depth, valid)
    assert torch.equal(out_image, image[:, :, :, 8:40])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"size": (0, 4)}, "size"), ({"size": (8, 8), "jitter": 1.5}, "jitter")],
)
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClipAugment(**kwargs)


def test_mismatched_map_shape_is_rejected() -> None:
    image, inverse_depth, valid = _clip()
    with pytest.raises(ValueError, match=r"map 1 must be \(T, H, W\)"):
        ClipAugment((16, 16))(image, inverse_depth, valid[:, :10])


def test_uint8_frames_match_float_frames() -> None:
    image, _, _ = _clip(frames=2, height=40, width=60)
    as_uint8 = (image * 255).round().to(torch.uint8)
    augment = ClipAugment((20, 20), flip_p=0.0, jitter=0.0, hue=0.0, random_crop=False)
    (from_uint8,) = augment(as_uint8)
    (from_float,) = augment(as_uint8.float() / 255)
    assert from_uint8.dtype == torch.float32
    assert torch.allclose(from_uint8, from_float, atol=1.5 / 255)


def test_hue_rotation_keeps_grey_and_luma() -> None:
    grey = torch.full((1, 3, 8, 8), 0.4)
    colour = torch.tensor([0.6, 0.4, 0.3])[None, :, None, None].expand(1, 3, 8, 8)
    augment = ClipAugment((8, 8), flip_p=0.0, jitter=0.0, hue=0.25, random_crop=False)
    luma = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]
    changed = []
    for seed in range(4):
        (out_grey,) = augment(grey, generator=torch.Generator().manual_seed(seed))
        (out_colour,) = augment(colour, generator=torch.Generator().manual_seed(seed))
        assert torch.allclose(out_grey, grey, atol=1e-5)
        assert torch.allclose((out_colour * luma).sum(1), (colour * luma).sum(1), atol=1e-5)
        changed.append(float((out_colour - colour).abs().max()) > 0.05)
    assert sum(changed) >= 2


def test_metric_depth_keeps_sky_and_invalid_through_nearest_resize() -> None:
    image, _, _ = _clip(frames=1, height=40, width=60)
    depth_m = torch.full((1, 40, 60), 3.0)
    depth_m[:, :10] = float("inf")
    depth_m[:, 20:30, 20:30] = float("nan")
    _, out = ClipAugment((20, 20), flip_p=0.0, jitter=0.0, hue=0.0)(image, depth_m)
    assert torch.isinf(out).any() and torch.isnan(out).any()
    finite = out[torch.isfinite(out)]
    assert torch.all(finite == 3.0)


def test_colour_jitter_matches_kornia_where_nothing_clips() -> None:
    from kornia.enhance import (
        adjust_brightness,
        adjust_contrast,
        adjust_saturation_with_gray_subtraction,
    )

    generator = torch.Generator().manual_seed(3)
    image = 0.35 + 0.2 * torch.rand(2, 3, 6, 6, generator=generator)  # stays inside [0, 1]
    augment = ClipAugment((6, 6), flip_p=0.0, jitter=0.1, hue=0.0, random_crop=False)
    (ours,) = augment(image, generator=torch.Generator().manual_seed(7))
    # replay the draws in their documented order: brightness, contrast, saturation
    replay = torch.Generator().manual_seed(7)
    brightness, contrast, saturation = (float(torch.rand((), generator=replay)) for _ in range(3))
    reference = adjust_brightness(image, -0.1 + 0.2 * brightness)
    reference = adjust_contrast(reference, 0.9 + 0.2 * contrast)
    reference = adjust_saturation_with_gray_subtraction(reference, 0.9 + 0.2 * saturation)
    assert not torch.allclose(ours, image, atol=1e-3)
    assert torch.allclose(ours, reference, atol=1e-5)
