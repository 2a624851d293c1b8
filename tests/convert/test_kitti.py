"""Tests of the KITTI converter on a tiny fake raw + annotated-depth folder in KITTI's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.kitti import KittiConverter, read_rectified_intrinsics

HEIGHT, WIDTH = 6, 10
#: Drives by split: raw frames 0..last, ground truth only for the annotated ones (from 5).
DRIVES = {
    "val": {"2011_09_26_drive_0002_sync": (5, 6, 7), "2011_09_28_drive_0037_sync": (5, 6)},
    "train": {"2011_09_26_drive_0001_sync": (5,)},
}
FLOAT16_RTOL = 5e-4
P_RECT_02 = "7.215377e+02 0 6.095593e+02 4.485728e+01 0 7.2153e+02 1.72854e+02 0.2163 0 0 1 0.0027"


def stored_depth(drive: str, frame: int) -> np.ndarray:
    """Known uint16 depth: 256 steps per metre, 0 (no LiDAR point) on the first row's half."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    offset = 10 * (int(drive[-9:-5]) % 10)  # from the drive number
    values = 256 * (2 + frame + offset) + 64 * cols + rows
    values[0, : WIDTH // 2] = 0
    return values.astype(np.uint16)


def expected_metres(drive: str, frame: int) -> np.ndarray:
    depth = stored_depth(drive, frame) / 256.0
    depth[0, : WIDTH // 2] = np.nan
    return depth


@pytest.fixture
def kitti_root(tmp_path: Path, write_png16, write_rgb, make_rgb) -> Path:
    root = tmp_path / "kitti"
    for split, drives in DRIVES.items():
        for drive, frames in drives.items():
            for frame in range(max(frames) + 3):  # raw frames before and after the annotations
                name = f"{frame:010d}.png"
                write_rgb(
                    root / drive[:10] / drive / "image_02/data" / name,
                    make_rgb(HEIGHT, WIDTH, frame % 5),
                )
                if frame in frames:
                    gt = root / split / drive / "proj_depth/groundtruth/image_02" / name
                    write_png16(gt, stored_depth(drive, frame))
    (root / "2011_09_26/calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "P_rect_00: 7.2 0 6.0 0 0 7.2 1.7 0 0 0 1 0\n"
        f"P_rect_02: {P_RECT_02}\n"
    )
    return root


def test_convert_gives_metres_invalid_frame_order_and_intrinsics(
    kitti_root: Path, tmp_path: Path, read_clips, make_rgb
) -> None:
    report = convert(
        KittiConverter(kitti_root), tmp_path / "out", "val", clip_length=0, progress=False
    )
    clips = read_clips(tmp_path / "out")

    assert report.clips_written == 2
    assert [clip.key for clip in clips] == [
        "kitti_2011_09_26_drive_0002_sync_000005",
        "kitti_2011_09_28_drive_0037_sync_000005",
    ]
    for clip, (drive, frames) in zip(clips, DRIVES["val"].items(), strict=True):
        assert clip.meta["scene"] == drive and clip.meta["frame_ids"] == list(frames)
        for t, frame in enumerate(frames):
            np.testing.assert_allclose(
                clip.depth[t], expected_metres(drive, frame), rtol=FLOAT16_RTOL, equal_nan=True
            )
            assert not np.isinf(clip.depth[t]).any()  # LiDAR: no sky label
            assert (
                np.abs(clip.frames[t].astype(int) - make_rgb(HEIGHT, WIDTH, frame % 5)).mean() < 3.0
            )
    assert clips[0].depth[0, 5, 9] == pytest.approx((256 * 27 + 64 * 9 + 5) / 256, rel=5e-4)
    assert clips[0].meta["intrinsics"] == [721.5377, 721.53, 609.5593, 172.854]
    assert clips[1].meta["intrinsics"] is None  # no calib_cam_to_cam.txt for 2011_09_28
    assert "max_frames" not in clips[0].meta


def test_max_frames_keeps_the_first_annotated_frames_and_is_recorded(
    kitti_root: Path, tmp_path: Path, read_clips
) -> None:
    converter = KittiConverter(kitti_root, max_frames="2")
    convert(converter, tmp_path / "out", "val", clip_length=0, progress=False)
    clips = read_clips(tmp_path / "out")
    manifest = json.loads((tmp_path / "out/kitti-val.manifest.json").read_text())

    assert [clip.meta["frame_ids"] for clip in clips] == [[5, 6], [5, 6]]
    assert all(clip.meta["max_frames"] == 2 for clip in clips)
    assert manifest["max_frames"] == 2


def test_splits_are_the_annotated_folders(kitti_root: Path) -> None:
    converter = KittiConverter(kitti_root)

    assert converter.drives("val") == sorted(DRIVES["val"])
    assert [c.frame_ids for c in converter.list_clips("train", clip_length=1)] == [[5]]
    with pytest.raises(ValueError, match="kitti has no split 'test'"):
        converter.list_clips("test", clip_length=1)


def test_annotated_frame_without_raw_image_is_named(kitti_root: Path) -> None:
    image = kitti_root / "2011_09_28/2011_09_28_drive_0037_sync/image_02/data/0000000006.png"
    image.unlink()

    with pytest.raises(FileNotFoundError, match="1 annotated frame.*0000000006.png"):
        KittiConverter(kitti_root).list_clips("val", clip_length=0)


def test_missing_raw_drive_and_missing_splits_show_the_layout(
    kitti_root: Path, tmp_path: Path
) -> None:
    (kitti_root / "2011_09_28").rename(kitti_root / "moved")
    with pytest.raises(FileNotFoundError, match=r"raw images of drive '2011_09_28_drive_0037"):
        KittiConverter(kitti_root).list_clips("val", clip_length=0)

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="proj_depth/groundtruth/image_02"):
        KittiConverter(tmp_path / "empty")


def test_calibration_without_the_left_colour_camera_is_refused(tmp_path: Path) -> None:
    calibration = tmp_path / "calib_cam_to_cam.txt"
    calibration.write_text("P_rect_00: 7.2 0 6.0 0 0 7.2 1.7 0 0 0 1 0\n")
    with pytest.raises(ValueError, match="has no P_rect_02 line"):
        read_rectified_intrinsics(calibration)

    calibration.write_text("P_rect_02: 1 2 3\n")
    with pytest.raises(ValueError, match="P_rect_02 is not 12 numbers"):
        read_rectified_intrinsics(calibration)
