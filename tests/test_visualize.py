"""Tests of flashdepth.visualize: colour map, comparison frames, GIF video in TensorBoard."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from flashdepth.visualize import colorize, comparison_frames, encode_gif, log_depth_media


def test_colorize_turbo_near_red_far_blue_invalid_black() -> None:
    ramp = torch.linspace(0, 1, 101).repeat(3, 1)  # (3, 101): far (0) -> near (1)
    valid = torch.ones_like(ramp, dtype=torch.bool)
    valid[1, 50] = False
    rgb = colorize(ramp, valid, limits=(0.0, 1.0))
    assert rgb.shape == (3, 101, 3) and rgb.dtype == np.uint8
    far, near = rgb[0, 0].astype(int), rgb[0, -1].astype(int)
    assert far[2] > far[0]  # turbo starts dark blue
    assert near[0] > near[2]  # and ends dark red
    assert (rgb[1, 50] == 0).all()
    assert len({tuple(c) for c in rgb[0]}) > 50  # a smooth ramp, not a few bands


def test_colorize_range_ignores_outliers_and_non_finite() -> None:
    depth = torch.full((10, 10), 2.0)
    depth[0, 0] = 1e6
    depth[0, 1] = float("nan")
    depth[5:] = 4.0
    rgb = colorize(depth)
    assert (rgb[0, 1] == 0).all()
    assert not np.array_equal(rgb[1, 1], rgb[6, 6])  # 2 and 4 stay distinguishable


def test_comparison_frames_layout() -> None:
    image = torch.rand(3, 3, 14, 28)
    target = torch.rand(3, 7, 10)
    frames = comparison_frames(image, target, torch.rand(3, 7, 10), torch.ones(3, 7, 10) > 0)
    assert frames.shape == (3, 7, 30, 3)
    expected_rgb = torch.nn.functional.interpolate(image, size=(7, 10), mode="bilinear")
    assert (
        np.abs(
            frames[:, :, :10].astype(int)
            - (expected_rgb * 255).permute(0, 2, 3, 1).round().int().numpy()
        ).max()
        <= 1
    )


def test_encode_gif_round_trip() -> None:
    frames = np.stack([np.full((6, 8, 3), 40 * t, dtype=np.uint8) for t in range(4)])
    gif = Image.open(io.BytesIO(encode_gif(frames, fps=10)))
    assert gif.format == "GIF" and gif.n_frames == 4 and gif.size == (8, 6)
    gif.seek(3)
    assert abs(int(np.asarray(gif.convert("RGB"))[0, 0, 0]) - 120) <= 2


def test_log_depth_media_writes_grid_and_gif_video(tmp_path) -> None:
    writer = SummaryWriter(str(tmp_path))
    t = 5
    log_depth_media(
        writer,
        "val_media/sintel",
        torch.rand(t, 3, 14, 14),
        torch.rand(t, 8, 12),
        torch.rand(t, 8, 12),
        torch.ones(t, 8, 12, dtype=torch.bool),
        step=7,
    )
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"val_media/sintel/grid", "val_media/sintel/video"}
    video = events.Images("val_media/sintel/video")[0]
    assert video.step == 7 and (video.width, video.height) == (36, 8)
    assert video.encoded_image_string[:6] == b"GIF89a"
    assert Image.open(io.BytesIO(video.encoded_image_string)).n_frames == t
    grid = events.Images("val_media/sintel/grid")[0]
    assert (grid.width, grid.height) == (36, 4 * 8)
