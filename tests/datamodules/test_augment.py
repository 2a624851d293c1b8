"""Tests for datamodules.augment: one geometry and one colour per clip, colour on the device."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from datamodules.augment import (
    IDENTITY_COLOUR,
    ClipAugment,
    apply_colour,
    colour_maps,
    identity_colour,
)

RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=torch.float64,
)


def _clip(frames: int = 4, height: int = 32, width: int = 48) -> tuple[torch.Tensor, ...]:
    """A clip of identical frames with a texture, inverse depth with a marker and a hole."""
    generator = torch.Generator().manual_seed(1)
    frame = torch.rand(3, height, width, generator=generator)
    image = frame.expand(frames, 3, height, width).clone()
    inverse_depth = torch.full((frames, height, width), 0.5)
    valid = torch.ones(frames, height, width, dtype=torch.bool)
    return image, inverse_depth, valid


def _uint8_frames(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W) uint8 frames, channels-last in memory like decoded JPEGs."""
    generator = torch.Generator().manual_seed(seed)
    decoded = torch.randint(0, 256, (frames, height, width, 3), generator=generator)
    return decoded.to(torch.uint8).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)


def _reference_colour(image01: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
    """The previous CPU float path, written out in float64: ``clamp(c * M @ rgb + c * b)``."""
    brightness, contrast, saturation, turn = (float(v) for v in colour)
    cos, sin = math.cos(2 * math.pi * turn), math.sin(2 * math.pi * turn)
    chroma = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, saturation * cos, -saturation * sin], [0.0, saturation * sin,
         saturation * cos]], dtype=torch.float64,
    )  # fmt: skip
    matrix = contrast * torch.linalg.inv(RGB_TO_YIQ) @ chroma @ RGB_TO_YIQ
    frames, _, height, width = image01.shape
    rgb = image01.double().reshape(frames, 3, height * width)  # (T, 3, H*W)
    mixed = torch.matmul(matrix, rgb) + contrast * brightness
    return mixed.clamp(0.0, 1.0).reshape(image01.shape).float()


def test_identical_frames_stay_identical_under_random_parameters() -> None:
    augment = ClipAugment((24, 24), flip_p=0.5, jitter=0.4, hue=0.1)
    image, inverse_depth, valid = _clip()
    for seed in range(6):
        clip = augment(image, inverse_depth, valid, generator=torch.Generator().manual_seed(seed))
        out_depth, out_valid = clip.maps
        assert clip.image.shape == (4, 3, 24, 24) and clip.colour.shape == (4,)
        assert out_depth.shape == out_valid.shape == (4, 24, 24)
        assert clip.image.dtype == torch.float32 and out_valid.dtype == torch.bool
        coloured = apply_colour(clip.image, clip.colour)  # one parameter set for all frames
        assert float(coloured.min()) >= 0.0 and float(coloured.max()) <= 1.0
        for t in range(1, 4):
            assert torch.equal(coloured[t], coloured[0])
            assert torch.equal(out_depth[t], out_depth[0])
            assert torch.equal(out_valid[t], out_valid[0])


def test_colour_parameters_are_drawn_per_clip_in_their_ranges() -> None:
    augment = ClipAugment((24, 24), flip_p=0.5, jitter=0.4, hue=0.1)
    image, _, _ = _clip()
    generator = torch.Generator().manual_seed(0)
    colours = torch.stack([augment(image, generator=generator).colour for _ in range(50)])
    assert colours.dtype == torch.float32 and colours.shape == (50, 4)
    brightness, contrast, saturation, turn = colours.unbind(-1)
    assert bool((brightness.abs() <= 0.4).all()) and bool((turn.abs() <= 0.1).all())
    assert bool(((contrast - 1).abs() <= 0.4).all() and ((saturation - 1).abs() <= 0.4).all())
    assert len({tuple(c.tolist()) for c in colours}) == 50  # a new draw for every clip
    off = ClipAugment((24, 24), jitter=0.0, hue=0.0)(image, generator=generator).colour
    assert off.tolist() == list(IDENTITY_COLOUR)


def test_uint8_clips_stay_uint8_with_the_resize_to_cover_crop() -> None:
    image = _uint8_frames(3, 40, 60)
    depth_m = torch.rand(3, 40, 60).half() + 1
    augment = ClipAugment((20, 20), flip_p=0.0, jitter=0.2, hue=0.05)
    for seed in range(4):
        clip = augment(image, depth_m, generator=torch.Generator().manual_seed(seed))
        # replay the draws: the crop window is 40x40 source pixels (scale 0.5) at (top, left)
        replay = torch.Generator().manual_seed(seed)
        top = int(torch.randint(0, 1, (1,), generator=replay))
        left = int(torch.randint(0, 21, (1,), generator=replay))
        window = image[:, :, top : top + 40, left : left + 40]
        expected = F.interpolate(
            window, size=(20, 20), mode="bilinear", align_corners=False, antialias=True
        )
        assert clip.image.dtype == torch.uint8 and torch.equal(clip.image, expected)
        assert clip.image.is_contiguous(memory_format=torch.channels_last)
        (out_depth,) = clip.maps
        assert out_depth.dtype == torch.float16
        # nearest-exact halving takes the second pixel of each pair
        assert torch.equal(out_depth, depth_m[:, top + 1 : top + 40 : 2, left + 1 : left + 40 : 2])


def test_a_frame_barely_larger_than_the_crop_is_cut_at_native_scale() -> None:
    image = _uint8_frames(2, 54, 100)
    # 54x100 -> 52x99: resize-to-cover scale max(52/54, 99/100) = 0.99 -> no resampling
    clip = ClipAugment((52, 99), flip_p=0.0, jitter=0.0, hue=0.0)(
        image, generator=torch.Generator().manual_seed(3)
    )
    windows = [image[:, :, t : t + 52, s : s + 99] for t in range(3) for s in range(2)]
    assert any(torch.equal(clip.image, window) for window in windows)
    # with no tolerance the clip is resampled (54x100 -> 53x100 source pixels -> 52x99)
    resampled = ClipAugment((52, 99), flip_p=0.0, jitter=0.0, hue=0.0, native_tolerance=0.0)(
        image, generator=torch.Generator().manual_seed(3)
    )
    assert not any(torch.equal(resampled.image, window) for window in windows)
    # outside the tolerance (scale 0.5 < 1 - 0.4) the resize-to-cover rule holds
    halved = ClipAugment((27, 50), flip_p=0.0, jitter=0.0, hue=0.0, native_tolerance=0.4)(image)
    expected = F.interpolate(image, size=(27, 50), mode="bilinear", antialias=True)
    assert torch.equal(halved.image, expected)


def test_parameters_change_between_clips() -> None:
    augment = ClipAugment((24, 24), flip_p=0.5, jitter=0.4, hue=0.1)
    image, inverse_depth, valid = _clip()
    generator = torch.Generator().manual_seed(0)
    outputs = [augment(image, inverse_depth, valid, generator=generator) for _ in range(4)]
    coloured = [apply_colour(clip.image, clip.colour) for clip in outputs]
    assert not all(torch.equal(coloured[0], other) for other in coloured[1:])


def test_a_seeded_generator_reproduces_geometry_and_colour() -> None:
    augment = ClipAugment((24, 24), flip_p=0.5, jitter=0.4, hue=0.1)
    image = _uint8_frames(3, 32, 48)
    depth_m = torch.rand(3, 32, 48).half()
    runs = [
        [augment(image, depth_m, generator=generator) for _ in range(5)]
        for generator in (torch.Generator().manual_seed(11), torch.Generator().manual_seed(11))
    ]
    for first, second in zip(*runs, strict=True):
        assert torch.equal(first.image, second.image) and torch.equal(first.colour, second.colour)
        assert torch.equal(first.maps[0], second.maps[0])
    other = augment(image, depth_m, generator=torch.Generator().manual_seed(12))
    assert not torch.equal(other.colour, runs[0][0].colour)


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
        clip = augment(image, inverse_depth, valid, generator=torch.Generator().manual_seed(seed))
        out_depth, out_valid = clip.maps
        marker = torch.nonzero(out_depth == 2.0).tolist()
        holes = torch.nonzero(~out_valid).tolist()
        assert [t for t, _, _ in marker] == [t for t, _, _ in holes] == [0, 1]
        _, row, col = marker[0]
        _, hole_row, hole_col = holes[0]
        assert torch.equal(clip.image[:, :, row, col], torch.tensor([[1.0, 0.0, 0.0]] * 2))
        assert hole_row == row and abs(hole_col - col) == 1
        flipped.append(hole_col == col - 1)
    assert any(flipped) and not all(flipped)


def test_resize_uses_nearest_so_no_value_is_invented() -> None:
    image, inverse_depth, valid = _clip(frames=1, height=40, width=60)
    inverse_depth[:, :, :30] = 1.0  # a sharp occlusion edge: 1 1/m left, 0.5 1/m right
    valid[:, 5:9, 5:9] = False
    clip = ClipAugment((20, 20), flip_p=0.0, jitter=0.0, hue=0.0)(image, inverse_depth, valid)
    out_depth, out_valid = clip.maps
    assert set(out_depth.unique().tolist()) <= {0.5, 1.0}
    assert 0 < int(out_valid.logical_not().sum()) < 20 * 20


def test_center_crop_without_augmentation_is_deterministic() -> None:
    image, inverse_depth, valid = _clip(frames=2, height=32, width=48)
    augment = ClipAugment((32, 32), flip_p=0.0, jitter=0.0, hue=0.0, random_crop=False)
    clip = augment(image, inverse_depth, valid)
    assert torch.equal(clip.image, image[:, :, :, 8:40])
    assert clip.colour.tolist() == list(IDENTITY_COLOUR)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": (0, 4)}, "size"),
        ({"size": (8, 8), "jitter": 1.5}, "jitter"),
        ({"size": (8, 8), "native_tolerance": 1.0}, "native_tolerance"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ClipAugment(**kwargs)


def test_mismatched_map_shape_is_rejected() -> None:
    image, inverse_depth, valid = _clip()
    with pytest.raises(ValueError, match=r"map 1 must be \(T, H, W\)"):
        ClipAugment((16, 16))(image, inverse_depth, valid[:, :10])


def test_metric_depth_keeps_sky_and_invalid_through_nearest_resize() -> None:
    image, _, _ = _clip(frames=1, height=40, width=60)
    depth_m = torch.full((1, 40, 60), 3.0)
    depth_m[:, :10] = float("inf")
    depth_m[:, 20:30, 20:30] = float("nan")
    (out,) = ClipAugment((20, 20), flip_p=0.0, jitter=0.0, hue=0.0)(image, depth_m).maps
    assert torch.isinf(out).any() and torch.isnan(out).any()
    finite = out[torch.isfinite(out)]
    assert torch.all(finite == 3.0)


def test_device_side_colour_equals_the_previous_cpu_float_path() -> None:
    """uint8 -> float with the colour map (now on the device) matches the previous float path.

    The previous path converted and colour-mapped in the worker; here it is computed in float64.
    """
    augment = ClipAugment((24, 24), flip_p=0.5, jitter=0.4, hue=0.1)
    image = _uint8_frames(3, 32, 48, seed=5)
    generator = torch.Generator().manual_seed(2)
    for _ in range(4):
        clip = augment(image, generator=generator)
        expected = _reference_colour(clip.image.float() / 255.0, clip.colour)
        got = apply_colour(clip.image, clip.colour)
        assert got.dtype == torch.float32 and got.is_contiguous()
        assert 0.05 < float((expected - clip.image.float() / 255).abs().max())  # colour changed
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_each_clip_of_a_batch_gets_its_own_colour() -> None:
    images = torch.stack([_uint8_frames(2, 8, 10, seed=s) for s in (1, 2)])  # (2, 2, 3, 8, 10)
    colour = torch.tensor([[0.1, 1.2, 0.8, 0.05], [-0.1, 0.9, 1.3, -0.08]])
    batch = apply_colour(images, colour)
    assert batch.shape == (2, 2, 3, 8, 10)
    for b in range(2):
        torch.testing.assert_close(
            batch[b], _reference_colour(images[b].float() / 255, colour[b]), rtol=0, atol=1e-5
        )
        torch.testing.assert_close(batch[b], apply_colour(images[b], colour[b]), rtol=0, atol=0)
    swapped = apply_colour(images, colour.flip(0))
    assert float((swapped - batch).abs().max()) > 0.05


def test_identity_colour_gives_exactly_the_frames_over_255() -> None:
    images = torch.stack([_uint8_frames(2, 8, 10, seed=s) for s in (1, 2)])
    assert torch.equal(apply_colour(images, identity_colour(2)), images.float() / 255)
    matrix, offset = colour_maps(identity_colour(3))
    assert torch.equal(matrix, torch.eye(3).expand(3, 3, 3)) and torch.equal(offset, torch.zeros(3))


def test_colour_map_matches_kornia_per_clip_where_nothing_clips() -> None:
    from kornia.enhance import (
        adjust_brightness,
        adjust_contrast,
        adjust_saturation_with_gray_subtraction,
    )

    generator = torch.Generator().manual_seed(3)
    images = 0.35 + 0.2 * torch.rand(2, 3, 3, 6, 6, generator=generator)  # stays inside [0, 1]
    augment = ClipAugment((6, 6), flip_p=0.0, jitter=0.1, hue=0.0, random_crop=False)
    colour = torch.stack([augment.draw_colour(generator) for _ in range(2)])  # (2, 4)
    ours = apply_colour(images, colour)
    # kornia on the 6 frames, each with its clip's factors: (B*T, 3, H, W), factors (B*T,)
    frames = images.flatten(0, 1)
    brightness, contrast, saturation = (colour[:, i].repeat_interleave(3) for i in range(3))
    reference = adjust_brightness(frames, brightness)
    reference = adjust_contrast(reference, contrast)
    reference = adjust_saturation_with_gray_subtraction(reference, saturation)
    assert not torch.allclose(ours, images, atol=1e-3)
    torch.testing.assert_close(ours, reference.unflatten(0, (2, 3)), rtol=0, atol=1e-5)


def test_hue_rotation_keeps_grey_and_luma() -> None:
    grey = torch.full((1, 3, 8, 8), 0.4)
    colour = torch.tensor([0.6, 0.4, 0.3])[None, :, None, None].expand(1, 3, 8, 8)
    augment = ClipAugment((8, 8), flip_p=0.0, jitter=0.0, hue=0.25, random_crop=False)
    luma = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]
    changed = []
    for seed in range(4):
        parameters = augment.draw_colour(torch.Generator().manual_seed(seed))
        out_grey = apply_colour(grey, parameters)
        out_colour = apply_colour(colour, parameters)
        assert torch.allclose(out_grey, grey, atol=1e-5)
        assert torch.allclose((out_colour * luma).sum(1), (colour * luma).sum(1), atol=1e-5)
        changed.append(float((out_colour - colour).abs().max()) > 0.05)
    assert sum(changed) >= 2


def test_apply_colour_names_the_shapes_it_got() -> None:
    with pytest.raises(ValueError, match=r"\(\*clips, 4\), got \(2, 3, 3, 4, 4\) and \(3, 4\)"):
        apply_colour(torch.zeros(2, 3, 3, 4, 4), torch.zeros(3, 4))
