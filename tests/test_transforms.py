"""Tests of flashdepth.transforms: network input sizes, normalisation, resizing back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flashdepth.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    normalize,
    postprocess,
    resize_shape,
)


@pytest.mark.parametrize(
    ("size", "kwargs", "expected"),
    [
        ((1080, 1920), {}, (518, 924)),  # DAv2 at 518
        ((1920, 1080), {}, (924, 518)),  # portrait
        ((1080, 1920), {"target": 1080, "long_side_max": 2044}, (1092, 1932)),  # 2K from 1080p
        ((2160, 3840), {"target": 1148, "long_side_max": 2044}, (1148, 2044)),  # 2K from 4K
        ((518, 924), {}, (518, 924)),  # exact multiples stay
        ((70, 126), {"target": None}, (70, 126)),
        ((60, 100), {"target": None}, (70, 112)),  # native size, rounded up
        ((1000, 3000), {"long_side_max": 1000}, (322, 994)),  # cap wins, rounded down
    ],
)
def test_resize_shape(size: tuple[int, int], kwargs: dict, expected: tuple[int, int]) -> None:
    h, w = resize_shape(*size, **kwargs)
    assert (h, w) == expected
    assert h % 14 == 0 and w % 14 == 0


def test_resize_shape_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="positive, got 0x10"):
        resize_shape(0, 10)
    with pytest.raises(ValueError, match="long_side_max=10 is below one patch"):
        resize_shape(100, 200, long_side_max=10)


def test_normalize_maps_imagenet_mean_to_zero_and_keeps_shape() -> None:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    image = mean.expand(2, 5, 3, 4, 6)
    torch.testing.assert_close(normalize(image), torch.zeros(2, 5, 3, 4, 6))
    torch.testing.assert_close(normalize(mean + std).flatten(), torch.ones(3))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\), got shape \(1, 4, 2, 2\)"):
        normalize(torch.zeros(1, 4, 2, 2))


def test_preprocess_uint8_hwc_array() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(60, 100, 3), dtype=np.uint8)
    preprocess = Preprocess(target=70)
    batch = preprocess(array)
    assert batch.shape == (1, 3, 70, 126) and batch.dtype == torch.float32
    assert preprocess.original_size == (60, 100)
    # un-normalised values stay in [0, 1] (bicubic overshoot is clamped)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    pixels = batch * std + mean
    assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    # same result from the equivalent float tensor
    as_tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(Preprocess(target=70)(as_tensor), batch)


def test_preprocess_keeps_constant_colours_and_valid_sizes() -> None:
    colour = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    image = colour.expand(2, 3, 30, 50)
    batch = Preprocess(target=42)(image)
    assert batch.shape == (2, 3, 42, 70)
    torch.testing.assert_close(batch, normalize(colour.expand(2, 3, 42, 70)))
    native = torch.rand(1, 3, 70, 126)
    torch.testing.assert_close(Preprocess(target=None)(native), normalize(native), rtol=0, atol=0)


def test_preprocess_explains_rejected_inputs() -> None:
    preprocess = Preprocess()
    with pytest.raises(ValueError, match="uint8 RGB image"):
        preprocess(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="RGBA"):
        preprocess(np.zeros((10, 10, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"got \(1, 1, 10, 10\)"):
        preprocess(torch.zeros(1, 1, 10, 10))
    with pytest.raises(ValueError, match="int64"):
        preprocess(torch.zeros(3, 10, 10, dtype=torch.int64))


def test_postprocess_round_trip() -> None:
    preprocess = Preprocess(target=70)
    batch = preprocess(torch.rand(2, 3, 45, 80))
    depth = torch.rand(2, *batch.shape[-2:])
    restored = postprocess(depth, preprocess.original_size)
    assert restored.shape == (2, 45, 80)
    # align_corners=True keeps the corner values
    torch.testing.assert_close(restored[:, 0, 0], depth[:, 0, 0])
    torch.testing.assert_close(restored[:, -1, -1], depth[:, -1, -1])
    assert postprocess(depth, tuple(depth.shape[-2:])) is depth
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        postprocess(depth[0], (45, 80))
