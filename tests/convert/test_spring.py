"""Spring converter on a tiny fake ``train/`` folder in the real layout (2x disparity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.spring import SpringConverter

H, W = 12, 16
SCENES = {"0001": 4, "0002": 2}


def full_res_disparity(frame: int) -> np.ndarray:
    """(2H, 2W) disparity; the top-left sample of each 2x2 block is the one kept."""
    disparity = np.full((2 * H, 2 * W), 999.0, dtype=np.float32)  # off-grid samples
    on_grid = disparity[::2, ::2]  # (H, W) view
    on_grid[:] = 10.0 * frame
    on_grid[0, 0], on_grid[0, 1], on_grid[0, 2] = 0.0, np.nan, -3.0
    on_grid[6:, :] = 65.0
    return disparity


@pytest.fixture
def root(tmp_path: Path, write_rgb, write_hdf5, make_rgb) -> Path:
    root = tmp_path / "spring"
    for scene, frames in SCENES.items():
        folder = root / "train" / scene
        lines = []
        for frame in range(1, frames + 1):  # Spring numbers frames from 1
            write_rgb(folder / "frame_left" / f"frame_left_{frame:04d}.png", make_rgb(H, W, frame))
            disparity_file = folder / "disp1_left" / f"disp1_left_{frame:04d}.dsp5"
            write_hdf5(disparity_file, "disparity", full_res_disparity(frame))
            lines.append(f"{1000.0 * frame} 1100.0 8.0 6.0")
        (folder / "cam_data").mkdir()
        (folder / "cam_data" / "intrinsics.txt").write_text("\n".join(lines) + "\n")
    return root


def test_disparity_becomes_metric_depth(root: Path, tmp_path: Path, read_clips) -> None:
    report = convert(SpringConverter(root), tmp_path / "out", "train", clip_length=2)
    assert report.clips_written == 3
    clips = read_clips(tmp_path / "out")
    assert [c.key for c in clips] == [
        "spring_0001_000001",
        "spring_0001_000003",
        "spring_0002_000001",
    ]
    clip = clips[1]
    assert clip.meta["frame_ids"] == [3, 4]
    assert clip.meta["intrinsics"] == [3000.0, 1100.0, 8.0, 6.0]
    for t, frame in enumerate((3, 4)):
        fx = 1000.0 * frame
        depth = clip.depth[t]
        assert depth.shape == (H, W)  # subsampled from (2H, 2W)
        np.testing.assert_allclose(depth[3, 5], fx * 0.065 / (10.0 * frame), rtol=1e-3)
        np.testing.assert_allclose(depth[8, 2], fx * 0.065 / 65.0, rtol=1e-3)
        assert np.isposinf(depth[0, 0])  # disparity 0: sky
        assert np.isnan(depth[0, 1]) and np.isnan(depth[0, 2])  # NaN and negative disparity
    assert clip.depth[0, 3, 5] == pytest.approx(6.5, rel=1e-3)  # 3000 * 0.065 / 30


def test_disparity_of_an_unexpected_size_is_an_error(root: Path, write_hdf5) -> None:
    converter = SpringConverter(root)
    spec = converter.list_clips("train", clip_length=2)[0]
    write_hdf5(spec.items[0][1], "disparity", np.ones((H + 1, W), dtype=np.float32))
    with pytest.raises(ValueError, match=r"disparity of shape \(13, 16\); expected \(24, 32\)"):
        converter.load_frame(spec, 0)


def test_missing_intrinsics_and_missing_train_folder_are_named(root: Path, tmp_path: Path):
    (root / "train" / "0002" / "cam_data" / "intrinsics.txt").unlink()
    with pytest.raises(FileNotFoundError, match="camera intrinsics file") as error:
        SpringConverter(root).list_clips("train", clip_length=2)
    assert "0002/cam_data/intrinsics.txt" in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="'train' not found"):
        SpringConverter(tmp_path / "empty")
