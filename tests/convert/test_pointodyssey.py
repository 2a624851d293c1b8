"""PointOdyssey converter on a tiny fake split folder in the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.pointodyssey import PointOdysseyConverter

H, W = 12, 16
SCENES = {"ani": 4, "kitchen_gfloor": 2}  # "kitchen_gfloor" has no anno.npz


def raw_depth(frame: int) -> np.ndarray:
    values = np.full((H, W), 1311 * (frame + 1), dtype=np.uint16)
    values[0, 0], values[0, 1] = 0, 65535
    return values


@pytest.fixture
def root(tmp_path: Path, write_rgb, write_png16, make_rgb) -> Path:
    root = tmp_path / "pointodyssey"
    for scene, frames in SCENES.items():
        folder = root / "train" / scene
        for i in range(frames):
            write_rgb(folder / "rgbs" / f"rgb_{i:05d}.jpg", make_rgb(H, W, i))
            write_png16(folder / "depths" / f"depth_{i:05d}.png", raw_depth(i))
    intrinsics = np.zeros((SCENES["ani"], 3, 3), dtype=np.float32)
    intrinsics[:, 0, 0] = 500.0 + np.arange(SCENES["ani"])
    intrinsics[:, 1, 1], intrinsics[:, 0, 2], intrinsics[:, 1, 2] = 510.0, 8.0, 6.0
    np.savez(root / "train" / "ani" / "anno.npz", intrinsics=intrinsics, trajs_2d=np.zeros(3))
    return root


def test_png_values_become_metres_with_sky_and_invalid(root: Path, tmp_path: Path, read_clips):
    report = convert(PointOdysseyConverter(root), tmp_path / "out", "train", clip_length=2)
    assert report.clips_written == 3
    clips = read_clips(tmp_path / "out")
    assert [c.key for c in clips] == [
        "pointodyssey_ani_000000",
        "pointodyssey_ani_000002",
        "pointodyssey_kitchen_gfloor_000000",
    ]
    clip = clips[1]
    assert clip.meta["frame_ids"] == [2, 3]
    assert clip.meta["intrinsics"] == [502.0, 510.0, 8.0, 6.0]
    for t, frame in enumerate((2, 3)):
        expected_m = 1311 * (frame + 1) / 65535 * 1000
        np.testing.assert_allclose(clip.depth[t, 4:, :], expected_m, rtol=1e-3)
        assert np.isnan(clip.depth[t, 0, 0]) and np.isposinf(clip.depth[t, 0, 1])
    assert clip.depth[0, 5, 5] == pytest.approx(60.01, rel=1e-3)  # 3933 / 65535 * 1000 m
    assert clips[2].meta["intrinsics"] is None


def test_missing_split_folder_and_bad_root(root: Path, tmp_path: Path) -> None:
    converter = PointOdysseyConverter(root)
    with pytest.raises(FileNotFoundError, match="the 'val' split folder not found"):
        converter.list_clips("val", clip_length=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no split folder \(train/, val/, ...\)"):
        PointOdysseyConverter(tmp_path / "empty")


def test_depth_png_that_is_not_16_bit_is_named(root: Path, write_rgb, make_rgb) -> None:
    converter = PointOdysseyConverter(root)
    spec = converter.list_clips("train", clip_length=2)[0]
    write_rgb(spec.items[0][1], make_rgb(H, W, 0))
    with pytest.raises(ValueError, match=r"depth_00000.png is not a 16-bit single-channel PNG"):
        converter.load_frame(spec, 0)
