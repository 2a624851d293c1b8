"""Tests of the ScanNet converter on tiny fake scans in the SensReader export layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.scannet import ScanNetConverter

DEPTH_SIZE = (24, 32)  # (H, W), the 640 x 480 of ScanNet shrunk 20 times
COLOUR_SIZE = (48, 64)  # twice the depth, as the 1296 x 968 colour is about twice 640 x 480
FRAMES = {"scans_test/scene0707_00": 11, "scans_test/scene0708_00": 2, "scans/scene0000_00": 1}
FLOAT16_RTOL = 5e-4
K_DEPTH = [[30.5, 0, 15.5, 0], [0, 31.0, 11.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def colour(frame: int) -> list[int]:
    """Each frame one flat colour, so resizing keeps it and it names the frame."""
    return [50 + 10 * frame, 100, 200 - 5 * frame]


def stored_depth(frame: int) -> np.ndarray:
    """Known uint16 millimetres; 0 (no measurement) at (8, 11), inside the benchmark crop."""
    rows, cols = np.mgrid[0 : DEPTH_SIZE[0], 0 : DEPTH_SIZE[1]]
    values = 1000 + 37 * cols + 11 * rows + 100 * frame
    values[8, 11] = 0
    values[0, 0] = 0
    return values.astype(np.uint16)


def expected_metres(frame: int, crop: bool) -> np.ndarray:
    depth = stored_depth(frame) / 1000.0
    depth[depth == 0] = np.nan
    return depth[8:-8, 11:-11] if crop else depth


@pytest.fixture
def scannet_root(tmp_path: Path, write_rgb, write_png16) -> Path:
    root = tmp_path / "scannet"
    for scan, count in FRAMES.items():
        size = DEPTH_SIZE if scan.startswith("scans/") else COLOUR_SIZE  # one export at depth size
        for frame in range(count):
            write_rgb(root / scan / "color" / f"{frame}.jpg", np.full((*size, 3), colour(frame)))
            write_png16(root / scan / "depth" / f"{frame}.png", stored_depth(frame))
    matrix = root / "scans_test/scene0707_00/intrinsic/intrinsic_depth.txt"
    matrix.parent.mkdir()
    np.savetxt(matrix, np.array(K_DEPTH))
    (root / "scans_test/scene0708_00/scene0708_00.txt").write_text(
        "colorHeight = 968\ncolorWidth = 1296\nfx_depth = 29.5\nfy_depth = 29.75\n"
        "mx_depth = 16.0\nmy_depth = 12.0\nsceneType = Bathroom\n"
    )
    return root


def test_convert_resizes_colour_to_depth_crops_and_converts_millimetres(
    scannet_root: Path, tmp_path: Path, read_clips
) -> None:
    convert(ScanNetConverter(scannet_root), tmp_path / "out", "test", 0, progress=False)
    clips = read_clips(tmp_path / "out")

    assert [clip.key for clip in clips] == [
        "scannet_scene0707_00_000000",
        "scannet_scene0708_00_000000",
    ]
    long, short = clips
    assert long.meta["frame_ids"] == list(range(11))  # numeric order: 10 after 9
    assert long.frames.shape == (11, 8, 10, 3) and long.depth.shape == (11, 8, 10)
    for t in range(11):
        np.testing.assert_allclose(
            long.depth[t], expected_metres(t, crop=True), rtol=FLOAT16_RTOL, equal_nan=True
        )
        assert np.abs(long.frames[t].astype(int) - colour(t)).max() <= 3
    assert np.isnan(long.depth[0, 0, 0]) and not np.isinf(long.depth).any()
    assert long.depth[2, 7, 9] == pytest.approx((1000 + 37 * 20 + 11 * 15 + 200) / 1000, 5e-4)
    assert long.meta["intrinsics"] == [30.5, 31.0, 15.5 - 11, 11.5 - 8]  # matrix file, cropped
    assert short.meta["intrinsics"] == [29.5, 29.75, 16.0 - 11, 12.0 - 8]  # scene metadata


def test_stride_and_max_frames_give_the_first_frames_at_the_stride(scannet_root: Path) -> None:
    converter = ScanNetConverter(scannet_root, max_frames="3")
    clips = converter.list_clips("test", clip_length=0, stride=3)

    assert [clip.frame_ids for clip in clips] == [[0, 3, 6], [0]]  # VDA: 90 frames at stride 3
    assert clips[0].extra["max_frames"] == 3


def test_crop_none_keeps_whole_frames_and_train_reads_scans(scannet_root: Path) -> None:
    converter = ScanNetConverter(scannet_root, crop="none")
    spec = converter.list_clips("test", clip_length=1)[1]
    rgb, depth = converter.load_frame(spec, 0)

    assert rgb.shape == (*DEPTH_SIZE, 3) and spec.extra["intrinsics"] == [30.5, 31.0, 15.5, 11.5]
    np.testing.assert_allclose(depth, expected_metres(1, crop=False), rtol=1e-6, equal_nan=True)
    train = converter.list_clips("train", clip_length=0)
    assert [(c.scene, c.frame_ids) for c in train] == [("scene0000_00", [0])]
    assert "intrinsics" not in train[0].extra  # neither intrinsic/ nor metadata
    rgb, _ = converter.load_frame(train[0], 0)
    assert rgb.shape == (*DEPTH_SIZE, 3)  # exported at depth size: not resized
    with pytest.raises(ValueError, match="crop must be one of benchmark, none"):
        ScanNetConverter(scannet_root, crop="eigen")


def test_colour_of_another_aspect_is_refused(scannet_root: Path, write_rgb) -> None:
    write_rgb(scannet_root / "scans_test/scene0708_00/color/1.jpg", np.zeros((30, 64, 3)))
    converter = ScanNetConverter(scannet_root)
    spec = converter.list_clips("test", clip_length=1)[-1]

    with pytest.raises(ValueError, match=r"1.jpg is 64x30 but its depth is 32x24"):
        converter.load_frame(spec, 0)


def test_missing_depth_and_missing_scans_are_named(scannet_root: Path, tmp_path: Path) -> None:
    (scannet_root / "scans_test/scene0708_00/depth/1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"scannet/scene0708_00: 1 RGB frame\(s\)"):
        ScanNetConverter(scannet_root).list_clips("test", clip_length=0)

    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="'scans_test' \\(or 'scans'\\) folder not found"):
        ScanNetConverter(tmp_path / "empty")
