"""TartanAir converter on a tiny fake folder (flat and nested environment layouts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.tartanair import TartanAirConverter

H, W = 12, 16
TRAJECTORIES = {  # folder relative to ROOT -> frames
    "abandonedfactory/Easy/P000": 4,
    "amusement/amusement/Hard/P001": 3,  # as unpacked by the official download
}


def raw_depth(frame: int) -> np.ndarray:
    depth = np.full((H, W), 2.0 + frame, dtype=np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2], depth[0, 3] = 12000.0, np.nan, 0.0, 999.0
    return depth


@pytest.fixture
def root(tmp_path: Path, write_rgb, write_npy, make_rgb) -> Path:
    root = tmp_path / "tartanair"
    for folder, frames in TRAJECTORIES.items():
        for i in range(frames):
            write_rgb(root / folder / "image_left" / f"{i:06d}_left.png", make_rgb(H, W, i))
            write_npy(root / folder / "depth_left" / f"{i:06d}_left_depth.npy", raw_depth(i))
    return root


def test_metres_sky_beyond_1km_and_fixed_intrinsics(root: Path, tmp_path: Path, read_clips):
    converter = TartanAirConverter(root)
    report = convert(converter, tmp_path / "out", "train", clip_length=2, stride=1)
    assert report.clips_written == 3
    clips = read_clips(tmp_path / "out")
    assert [(c.key, c.meta["scene"]) for c in clips] == [
        ("tartanair_abandonedfactory_easy_p000_000000", "abandonedfactory/Easy/P000"),
        ("tartanair_abandonedfactory_easy_p000_000002", "abandonedfactory/Easy/P000"),
        ("tartanair_amusement_hard_p001_000000", "amusement/Hard/P001"),
    ]
    clip = clips[1]
    assert clip.meta["frame_ids"] == [2, 3]
    assert clip.meta["intrinsics"] == [320.0, 320.0, 320.0, 240.0]
    assert clip.depth[0, 5, 5] == 4.0 and clip.depth[1, 5, 5] == 5.0
    assert np.isposinf(clip.depth[:, 0, 0]).all()  # 12 km: sky
    assert np.isnan(clip.depth[:, 0, 1]).all() and np.isnan(clip.depth[:, 0, 2]).all()
    np.testing.assert_allclose(clip.depth[:, 0, 3], 999.0, rtol=1e-3)  # under 1 km: kept


def test_stride_two_and_short_trajectory_skipped(root: Path) -> None:
    converter = TartanAirConverter(root)
    clips = converter.list_clips("train", clip_length=2, stride=2)
    assert [(c.scene, c.frame_ids) for c in clips] == [
        ("abandonedfactory/Easy/P000", [0, 2]),
        ("amusement/Hard/P001", [0, 2]),
    ]
    clips = converter.list_clips("train", clip_length=4, stride=1)
    assert [c.scene for c in clips] == ["abandonedfactory/Easy/P000"]
    assert converter.skipped_scenes == ["amusement/Hard/P001"]


def test_depth_that_is_not_a_2d_float_array_is_named(root: Path, write_npy) -> None:
    converter = TartanAirConverter(root)
    spec = converter.list_clips("train", clip_length=2)[0]
    write_npy(spec.items[1][1], np.zeros((H, W, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="000001_left_depth.npy holds a uint8 array"):
        converter.load_frame(spec, 1)


def test_root_without_trajectories_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tartanair" / "abandonedfactory" / "Easy").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no trajectory folder") as error:
        TartanAirConverter(tmp_path / "tartanair")
    assert "depth_left/000000_left_depth.npy" in str(error.value)
