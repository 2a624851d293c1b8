"""Tests of the UnrealStereo4K converter: RGBA PNG, disparity npy and stereo camera text files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.convert import convert
from datamodules.convert.unrealstereo4k import UnrealStereo4kConverter

HEIGHT, WIDTH = 12, 16
FX, FY, CX, CY = 20.0, 21.0, 7.5, 5.5
BASELINES_M = {"00000": 0.5, "00003": 0.2}  # outdoor and indoor baselines of the dataset
FLOAT16_RTOL = 5e-4


def rotation(angle: float) -> np.ndarray:
    """Rotation about the vertical axis (the shared orientation of a rectified pair)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def write_camera(path: Path, r: np.ndarray, t: np.ndarray) -> None:
    """UnrealStereo4K camera file: K on the first line, [R|t] on the second."""
    path.parent.mkdir(parents=True, exist_ok=True)
    k = np.array([[FX, 0, CX], [0, FY, CY], [0, 0, 1]])
    pose = np.hstack([r, t[:, None]])
    lines = [" ".join(f"{v:.17g}" for v in matrix.ravel()) for matrix in (k, pose)]
    path.write_text("\n".join(lines) + "\n")


def disparity(frame: int) -> np.ndarray:
    """Known disparity (pixels) with sky (0, tiny) and invalid (negative, NaN) pixels."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    disp = (1.0 + 0.5 * cols + 0.25 * rows + frame).astype(np.float32)
    disp[0, :3] = 0.0  # infinitely far
    disp[1, 0] = 1e-4  # 20 * 0.5 / 1e-4 = 100 km, beyond 10 km
    disp[2, 0] = -1.0
    disp[2, 1] = np.nan
    return disp


def expected_metres(frame: int, baseline: float) -> np.ndarray:
    disp = disparity(frame).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = FX * baseline / disp
    depth[0, :3] = np.inf
    depth[1, 0] = np.inf
    depth[2, :2] = np.nan
    return depth


def rgba(frame: int) -> np.ndarray:
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([rows * 10 + frame, cols * 8, np.full_like(rows, 50 + frame)], axis=-1)
    alpha = np.full((HEIGHT, WIDTH, 1), 255)
    return np.concatenate([rgb, alpha], axis=-1).astype(np.uint8)


@pytest.fixture
def unreal_root(tmp_path: Path, write_npy) -> Path:
    root = tmp_path / "UnrealStereo4K"
    for s, (scene, baseline) in enumerate(BASELINES_M.items()):
        r = rotation(0.3 * s)
        for frame in range(3):
            stem = f"{frame:05d}"
            image = root / scene / "Image0" / f"{stem}.png"
            image.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgba(frame), mode="RGBA").save(image)
            write_npy(root / scene / "Disp0" / f"{stem}.npy", disparity(frame))
            centre = np.array([1.0 + frame, 2.0, -3.0])  # the camera moves along x
            right = centre + baseline * r.T @ np.array([1.0, 0.0, 0.0])  # offset along its x
            write_camera(root / scene / "Extrinsics0" / f"{stem}.txt", r, -r @ centre)
            write_camera(root / scene / "Extrinsics1" / f"{stem}.txt", r, -r @ right)
    return root


def test_convert_gives_depth_from_disparity_with_sky_and_invalid(
    unreal_root: Path, tmp_path: Path, read_clips
) -> None:
    report = convert(
        UnrealStereo4kConverter(unreal_root),
        tmp_path / "out",
        "test",
        clip_length=3,
        progress=False,
    )
    clips = read_clips(tmp_path / "out")

    assert report.clips_written == 2
    assert [clip.key for clip in clips] == [
        "unrealstereo4k_00000_000000",
        "unrealstereo4k_00003_000000",
    ]
    for clip, baseline in zip(clips, BASELINES_M.values(), strict=True):
        assert clip.meta["frame_ids"] == [0, 1, 2]
        assert clip.meta["intrinsics"] == [FX, FY, CX, CY]
        for t in range(3):
            np.testing.assert_allclose(
                clip.depth[t], expected_metres(t, baseline), rtol=FLOAT16_RTOL, equal_nan=True
            )
            error = np.abs(clip.frames[t].astype(int) - rgba(t)[..., :3]).mean()
            assert error < 3.0  # alpha dropped, RGB within JPEG tolerance


def test_clip_length_and_stride_cut_scenes(unreal_root: Path) -> None:
    converter = UnrealStereo4kConverter(unreal_root)

    assert len(converter.list_clips("test", clip_length=1)) == 6
    assert [c.frame_ids for c in converter.list_clips("test", clip_length=2, stride=2)] == [
        [0, 2],
        [0, 2],
    ]
    assert converter.list_clips("test", clip_length=4) == []
    assert converter.skipped_scenes == ["00000", "00003"]


def test_unrectified_pair_is_refused(unreal_root: Path) -> None:
    write_camera(unreal_root / "00000/Extrinsics1/00001.txt", rotation(0.5), np.zeros(3))
    converter = UnrealStereo4kConverter(unreal_root)
    spec = converter.list_clips("test", clip_length=3)[0]

    with pytest.raises(ValueError, match="00001.txt.*rectified"):
        converter.load_clip(spec)


def test_disparity_of_the_wrong_size_is_refused(unreal_root: Path, write_npy) -> None:
    write_npy(unreal_root / "00003/Disp0/00000.npy", np.ones((HEIGHT, WIDTH + 1), np.float32))
    converter = UnrealStereo4kConverter(unreal_root)
    spec = converter.list_clips("test", clip_length=1)[3]

    with pytest.raises(ValueError, match=r"00000\.npy has shape \(12, 17\)"):
        converter.load_frame(spec, 0)


def test_malformed_camera_file_is_refused(unreal_root: Path) -> None:
    (unreal_root / "00000/Extrinsics0/00000.txt").write_text("1 2 3\n4 5 6\n")

    with pytest.raises(ValueError, match=r"00000\.txt has lines of \[3, 3\] numbers"):
        UnrealStereo4kConverter(unreal_root).list_clips("test", clip_length=1)


def test_missing_disparity_folder_names_it(unreal_root: Path) -> None:
    (unreal_root / "00003/Disp0").rename(unreal_root / "00003/Disp_moved")

    with pytest.raises(FileNotFoundError, match="'Disp0' of scene '00003'"):
        UnrealStereo4kConverter(unreal_root)
