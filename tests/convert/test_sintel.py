"""Tests of the Sintel converter on a tiny fake dataset with real `.dpt`/`.cam` binary files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.sintel import TAG_FLOAT, SintelConverter, read_dpt

HEIGHT, WIDTH = 12, 16
SCENES = ("alley_1", "bamboo_2")
FRAMES = (1, 2, 3)
FLOAT16_RTOL = 5e-4  # float16 rounding error is at most 2**-12 relative


def write_dpt(path: Path, depth: np.ndarray) -> None:
    """Sintel `.dpt`: float32 tag, int32 width, int32 height, float32 data (little-endian)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = depth.shape
    header = np.array([TAG_FLOAT], "<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    path.write_bytes(header + depth.astype("<f4").tobytes())


def write_cam(path: Path, intrinsics: np.ndarray) -> None:
    """Sintel `.cam`: float32 tag, 3x3 float64 K, 3x4 float64 [R|t] (little-endian)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extrinsics = np.hstack([np.eye(3), np.array([[0.5], [0.0], [2.0]])])
    data = np.array([TAG_FLOAT], "<f4").tobytes() + intrinsics.astype("<f8").tobytes()
    path.write_bytes(data + extrinsics.astype("<f8").tobytes())


def raw_depth(scene_index: int, frame: int) -> np.ndarray:
    """Known stored depth (metres) with sky, invalid and near-zero pixels at fixed places."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    depth = (1.0 + 0.25 * cols + 0.5 * rows + 10.0 * scene_index + frame).astype(np.float32)
    depth[0, :4] = 1e10  # sky: far beyond 10 km
    depth[1, 0] = 2e4  # sky: just beyond the threshold
    depth[2, 0] = np.nan
    depth[2, 1] = np.inf
    depth[2, 2] = 0.0
    depth[2, 3] = 1e-6  # below 1e-5 m
    return depth


def expected_metres(scene_index: int, frame: int) -> np.ndarray:
    depth = raw_depth(scene_index, frame)
    depth[0, :4] = np.inf
    depth[1, 0] = np.inf
    depth[2, :4] = np.nan
    return depth


def focal(scene_index: int, frame: int) -> float:
    """Constant focal in the first scene; a zoom on the last frame of the second."""
    return 20.0 if scene_index == 1 and frame == 3 else 18.0


@pytest.fixture
def sintel_root(tmp_path: Path, write_rgb, make_rgb) -> Path:
    root = tmp_path / "sintel"
    for s, scene in enumerate(SCENES):
        for frame in FRAMES:
            name = f"frame_{frame:04d}"
            write_rgb(root / "training/clean" / scene / f"{name}.png", make_rgb(HEIGHT, WIDTH, s))
            write_rgb(
                root / "training/final" / scene / f"{name}.png", make_rgb(HEIGHT, WIDTH, s + 3)
            )
            write_dpt(root / "training/depth" / scene / f"{name}.dpt", raw_depth(s, frame))
            k = np.array([[focal(s, frame), 0, 7.5], [0, focal(s, frame), 5.5], [0, 0, 1]])
            write_cam(root / "training/camdata_left" / scene / f"{name}.cam", k)
    return root


def test_convert_gives_metric_depth_sky_invalid_and_intrinsics(
    sintel_root: Path, tmp_path: Path, read_clips, make_rgb
) -> None:
    report = convert(
        SintelConverter(sintel_root), tmp_path / "out", "test", clip_length=3, progress=False
    )
    clips = read_clips(tmp_path / "out")

    assert report.clips_written == 2
    assert [clip.key for clip in clips] == ["sintel_alley_1_000001", "sintel_bamboo_2_000001"]
    for s, clip in enumerate(clips):
        assert clip.meta["scene"] == SCENES[s]
        assert clip.meta["frame_ids"] == [1, 2, 3]
        assert clip.meta["depth_units"] == "m"
        assert clip.meta["intrinsics"] == [18.0, 18.0, 7.5, 5.5]
        for t, frame in enumerate(FRAMES):
            np.testing.assert_allclose(
                clip.depth[t], expected_metres(s, frame), rtol=FLOAT16_RTOL, equal_nan=True
            )
            error = np.abs(clip.frames[t].astype(int) - make_rgb(HEIGHT, WIDTH, s)).mean()
            assert error < 3.0  # clean pass, within JPEG tolerance
    assert "intrinsics_per_frame" not in clips[0].meta
    assert clips[1].meta["intrinsics_per_frame"] == [
        [18.0, 18.0, 7.5, 5.5],
        [18.0, 18.0, 7.5, 5.5],
        [20.0, 20.0, 7.5, 5.5],
    ]


def test_clips_are_non_overlapping_windows_at_the_stride(sintel_root: Path) -> None:
    converter = SintelConverter(sintel_root)

    singles = converter.list_clips("test", clip_length=1)
    pairs = converter.list_clips("test", clip_length=2)
    strided = converter.list_clips("test", clip_length=2, stride=2)

    assert [(c.scene, c.frame_ids) for c in singles] == [(s, [f]) for s in SCENES for f in FRAMES]
    assert [c.frame_ids for c in pairs] == [[1, 2], [1, 2]]  # frame 3 left over
    assert [c.frame_ids for c in strided] == [[1, 3], [1, 3]]


def test_final_pass_reads_the_final_images(sintel_root: Path, make_rgb) -> None:
    converter = SintelConverter(sintel_root, render_pass="final")
    spec = converter.list_clips("test", clip_length=1)[0]

    rgb, depth = converter.load_frame(spec, 0)

    np.testing.assert_array_equal(rgb, make_rgb(HEIGHT, WIDTH, 3))  # PNG is lossless
    assert depth.dtype == np.float32 and depth.shape == (HEIGHT, WIDTH)


def test_val_split_is_the_first_eight_scenes(sintel_root: Path) -> None:
    for index in range(7):
        (sintel_root / "training/clean" / f"cave_{index}").mkdir()

    scenes = SintelConverter(sintel_root).scenes("val")

    assert scenes == ["alley_1", "bamboo_2"] + [f"cave_{index}" for index in range(6)]


def test_missing_depth_folder_names_it(sintel_root: Path) -> None:
    (sintel_root / "training/depth").rename(sintel_root / "training/depth_moved")

    with pytest.raises(FileNotFoundError, match="training/depth") as error:
        SintelConverter(sintel_root)
    assert "camdata_left" in str(error.value)  # the message shows the expected layout


def test_missing_render_pass_names_it(sintel_root: Path) -> None:
    (sintel_root / "training/final").rename(sintel_root / "training/final_moved")

    with pytest.raises(FileNotFoundError, match="'final' render pass"):
        SintelConverter(sintel_root, render_pass="final")
    with pytest.raises(ValueError, match="render_pass"):
        SintelConverter(sintel_root, render_pass="albedo")


def test_corrupt_dpt_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "frame_0001.dpt"
    write_dpt(path, np.ones((4, 5), np.float32))
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="frame_0001.dpt.*truncated"):
        read_dpt(path)

    path.write_bytes(np.array([1.0], "<f4").tobytes() + bytes(8))
    with pytest.raises(ValueError, match="tag"):
        read_dpt(path)
