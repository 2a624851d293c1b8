"""Tests of the NYUv2 converter on tiny fake ``nyu_depth_v2_labeled.mat`` and ``splits.mat``."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from datamodules.convert import convert
from datamodules.convert.nyuv2 import NYU_INTRINSICS, Nyuv2Converter

SCENES = ["kitchen_0004", "kitchen_0004", "office_0005", "bathroom_0001"]
TEST, TRAIN = [4, 2], [1, 3]  # 1-based, as in splits.mat (test deliberately unsorted)
FLOAT16_RTOL = 5e-4


def depth_metres(number: int, height: int, width: int) -> np.ndarray:
    """Known (H, W) depth in metres of image ``number``, with a 0 and a NaN pixel."""
    rows, cols = np.mgrid[0:height, 0:width]
    depth = (1.0 + 0.25 * rows + 0.125 * cols + number).astype(np.float32)
    depth[0, 0], depth[0, 1] = 0.0, np.nan
    return depth


def expected_metres(number: int, height: int, width: int) -> np.ndarray:
    depth = depth_metres(number, height, width)
    depth[0, 0] = np.nan
    return depth


def write_nyu(root: Path, height: int, width: int, images: list[np.ndarray]) -> Path:
    """Both files in NYU's layout: MATLAB v7.3 stores arrays transposed, (N, 3, W, H)."""
    root.mkdir(parents=True)
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as mat:
        mat["images"] = np.stack([image.transpose(2, 1, 0) for image in images])
        depths = [depth_metres(n, height, width).T for n in range(1, len(images) + 1)]
        mat["depths"] = np.stack(depths)
        names = mat.create_group("#refs#")
        references = mat.create_dataset("scenes", (1, len(images)), dtype=h5py.ref_dtype)
        for i, scene in enumerate(SCENES[: len(images)]):
            codes = np.array([[ord(c)] for c in scene], dtype=np.uint16)  # MATLAB char (len, 1)
            references[0, i] = names.create_dataset(f"scene{i}", data=codes).ref
    savemat(root / "splits.mat", {"testNdxs": np.array([TEST]).T, "trainNdxs": np.array([TRAIN]).T})
    return root


@pytest.fixture
def nyu_root(tmp_path: Path, make_rgb) -> Path:
    return write_nyu(tmp_path / "nyu", 6, 8, [make_rgb(6, 8, n) for n in range(4)])


def test_convert_gives_one_frame_videos_in_metres(
    nyu_root: Path, tmp_path: Path, read_clips, make_rgb
) -> None:
    converter = Nyuv2Converter(nyu_root, crop="none")
    report = convert(converter, tmp_path / "out", "test", clip_length=0, progress=False)
    clips = read_clips(tmp_path / "out")

    assert report.clips_written == 2
    assert [clip.key for clip in clips] == [
        "nyuv2_kitchen_0004_0002_000002",
        "nyuv2_bathroom_0001_0004_000004",
    ]
    for clip, number in zip(clips, sorted(TEST), strict=True):
        assert clip.meta["frame_ids"] == [number] and clip.frames.shape == (1, 6, 8, 3)
        np.testing.assert_allclose(
            clip.depth[0], expected_metres(number, 6, 8), rtol=FLOAT16_RTOL, equal_nan=True
        )
        assert np.isnan(clip.depth[0, 0, :2]).all() and not np.isinf(clip.depth).any()
        assert np.abs(clip.frames[0].astype(int) - make_rgb(6, 8, number - 1)).mean() < 3.0
        assert clip.meta["intrinsics"] == NYU_INTRINSICS
    assert clips[0].depth[0, 5, 7] == pytest.approx(1.0 + 1.25 + 0.875 + 2)
    train = converter.list_clips("train", clip_length=1)
    assert [(c.scene, c.frame_ids) for c in train] == [
        ("kitchen_0004_0001", [1]),
        ("office_0005_0003", [3]),
    ]


def test_benchmark_crop_is_the_eigen_crop(tmp_path: Path) -> None:
    flat = [np.full((480, 640, 3), (30 * n, 90, 180), dtype=np.uint8) for n in range(4)]
    converter = Nyuv2Converter(write_nyu(tmp_path / "nyu", 480, 640, flat))
    spec = converter.list_clips("test", clip_length=0)[0]
    rgb, depth = converter.load_frame(spec, 0)

    assert rgb.shape == (426, 560, 3) and depth.shape == (426, 560)
    assert (rgb == (30, 90, 180)).all()  # image 2
    assert depth[0, 0] == depth_metres(2, 480, 640)[45, 41] == pytest.approx(1 + 11.25 + 5.125 + 2)
    fx, fy, cx, cy = NYU_INTRINSICS
    assert spec.extra["intrinsics"] == [fx, fy, cx - 41, cy - 45]


def test_max_frames_is_accepted_and_longer_clips_have_no_video(nyu_root: Path) -> None:
    converter = Nyuv2Converter(nyu_root, max_frames=500, crop="none")

    assert [c.extra["max_frames"] for c in converter.list_clips("test", 0)] == [500, 500]
    assert converter.list_clips("test", clip_length=2) == []
    assert converter.skipped_scenes == ["kitchen_0004_0002", "bathroom_0001_0004"]


def test_bad_files_are_named(nyu_root: Path) -> None:
    savemat(nyu_root / "splits.mat", {"testNdxs": np.array([[2], [9]]), "trainNdxs": [[1]]})
    with pytest.raises(ValueError, match="names image 9 but nyu_depth_v2_labeled.mat holds 4"):
        Nyuv2Converter(nyu_root).list_clips("test", clip_length=0)

    (nyu_root / "nyu_depth_v2_labeled.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    with pytest.raises(ValueError, match="cannot read .*labeled.mat as MATLAB v7.3"):
        Nyuv2Converter(nyu_root).list_clips("test", clip_length=0)

    with pytest.raises(ValueError, match="crop must be one of benchmark, none"):
        Nyuv2Converter(nyu_root, crop="garg")
    (nyu_root / "splits.mat").unlink()
    with pytest.raises(FileNotFoundError, match="'splits.mat' not found"):
        Nyuv2Converter(nyu_root)
