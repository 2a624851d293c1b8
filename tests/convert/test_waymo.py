"""Tests of the Waymo converter on a tiny fake dataset: jpg frames and (N, 3) LiDAR point npy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.waymo import TEST_SEGMENTS, WaymoConverter

HEIGHT, WIDTH = 12, 16
FLOAT16_RTOL = 5e-4


def photo(frame: int) -> np.ndarray:
    """A smooth (H, W, 3) uint8 frame, distinct per frame number, that survives two JPEGs."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.array([30 + 9 * frame, 180 - 7 * frame, 100])
    return (base + 2 * rows[..., None] + cols[..., None]).clip(0, 255).astype(np.uint8)


def lidar_points(frame: int) -> np.ndarray:
    """Known points [x (column), y (row), depth m] including every case the converter handles."""
    return np.array(
        [
            [3.0, 2.0, 10.0 + frame],  # exact pixel centre corner
            [5.7, 4.2, 20.5],  # fractional -> pixel (row 4, col 5)
            [7.0, 1.0, 30.0],  # two points in one pixel: the nearest (12 m) wins
            [7.4, 1.9, 12.0],
            [15.9, 11.9, 7.25],  # last pixel
            [16.0, 3.0, 5.0],  # outside (x == width)
            [-0.5, 3.0, 5.0],  # outside (floor -> -1)
            [2.0, 12.0, 5.0],  # outside (y == height)
            [1.0, 1.0, 0.0],  # zero depth: no measurement
            [2.0, 1.0, -3.0],  # negative depth
            [4.0, 1.0, np.nan],  # non-finite
        ],
        dtype=np.float32,
    )


def expected_metres(frame: int) -> np.ndarray:
    depth = np.full((HEIGHT, WIDTH), np.nan, dtype=np.float32)
    depth[2, 3] = 10.0 + frame
    depth[4, 5] = 20.5
    depth[1, 7] = 12.0
    depth[11, 15] = 7.25
    return depth


def write_segment(root: Path, segment: str, frames: range, write_rgb, write_npy) -> None:
    for frame in frames:
        write_rgb(root / segment / f"FRONT/rgb/original/{frame}.jpg", photo(frame))
        write_npy(root / segment / f"FRONT/depth/{frame}.npy", lidar_points(frame))


@pytest.fixture
def waymo_root(tmp_path: Path, write_rgb, write_npy) -> Path:
    root = tmp_path / "waymo_val"
    for segment in ("segment-b_000", "segment-a_000"):
        write_segment(root, segment, range(0, 11), write_rgb, write_npy)
    return root


def test_convert_gives_sparse_metric_depth(waymo_root: Path, tmp_path: Path, read_clips) -> None:
    report = convert(
        WaymoConverter(waymo_root), tmp_path / "out", "val", clip_length=5, progress=False
    )
    clips = read_clips(tmp_path / "out")

    assert report.clips_written == 4  # 11 frames per segment: 2 clips of 5, frame 10 left over
    assert [clip.key for clip in clips] == [
        "waymo_segment-a_000_000000",
        "waymo_segment-a_000_000005",
        "waymo_segment-b_000_000000",
        "waymo_segment-b_000_000005",
    ]
    assert clips[1].meta["frame_ids"] == [5, 6, 7, 8, 9]  # numeric order: 10 after 9
    for clip in clips:
        assert clip.meta["intrinsics"] is None
        for t, frame in enumerate(clip.meta["frame_ids"]):
            np.testing.assert_allclose(
                clip.depth[t], expected_metres(frame), rtol=FLOAT16_RTOL, equal_nan=True
            )
            assert np.abs(clip.frames[t].astype(int) - photo(frame)).mean() < 3.0


def test_test_split_is_the_thirty_reference_segments(tmp_path: Path, write_rgb, write_npy) -> None:
    root = tmp_path / "waymo_val"
    for segment in (*TEST_SEGMENTS, "segment-0000_extra"):
        write_segment(root, segment, range(2), write_rgb, write_npy)

    clips = WaymoConverter(root).list_clips("test", clip_length=2)

    assert len(TEST_SEGMENTS) == len(set(TEST_SEGMENTS)) == 30
    assert [clip.scene for clip in clips] == list(TEST_SEGMENTS)
    assert WaymoConverter(root).scenes("val")[0] == "segment-0000_extra"


def test_test_split_names_a_missing_segment(waymo_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"30 are not under .*{TEST_SEGMENTS[0]}"):
        WaymoConverter(waymo_root).list_clips("test", clip_length=1)


def test_points_array_of_the_wrong_shape_is_refused(waymo_root: Path, write_npy) -> None:
    write_npy(waymo_root / "segment-a_000/FRONT/depth/0.npy", np.ones((4, 2), np.float32))
    converter = WaymoConverter(waymo_root)
    spec = converter.list_clips("val", clip_length=1)[0]

    with pytest.raises(ValueError, match=r"0\.npy holds a float32 array of shape \(4, 2\)"):
        converter.load_frame(spec, 0)


def test_missing_depth_folder_names_it(waymo_root: Path) -> None:
    (waymo_root / "segment-a_000/FRONT/depth").rename(waymo_root / "segment-a_000/FRONT/lidar")

    with pytest.raises(FileNotFoundError, match="segment-a_000/FRONT/depth"):
        WaymoConverter(waymo_root)


def test_root_without_segments_shows_the_layout(tmp_path: Path) -> None:
    (tmp_path / "waymo/segment-a/FRONT/rgb").mkdir(parents=True)

    with pytest.raises(FileNotFoundError, match="FRONT/rgb/original/0.jpg"):
        WaymoConverter(tmp_path / "waymo")
