"""MVS-Synth converter on a tiny fake GTAV_1080 folder in the real layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert, get_converter
from datamodules.convert.mvs_synth import MVSSynthConverter

H, W = 12, 16
SCENES = {"0000": 5, "0001": 3, "0118": 2}  # 0118 belongs to the val split


def raw_depth(scene: str, frame: int) -> np.ndarray:
    """GTA units (0.1 m): 100*(scene+1) + 10*frame, with sky, NaN and 0 pixels."""
    depth = np.full((H, W), 100.0 * (int(scene) + 1) + 10.0 * frame, dtype=np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2] = np.inf, np.nan, 0.0
    depth[5:, 8:] += 7.5
    return depth


@pytest.fixture
def root(tmp_path: Path, write_exr, write_rgb, write_json, make_rgb) -> Path:
    root = tmp_path / "GTAV_1080"
    for scene, frames in SCENES.items():
        for i in range(frames):
            write_rgb(root / scene / "images" / f"{i:04d}.png", make_rgb(H, W, i))
            write_exr(root / scene / "depths" / f"{i:04d}.exr", raw_depth(scene, i))
            pose = {"f_x": 1000.0 + i, "f_y": 1001.0, "c_x": 8.0, "c_y": 6.0, "extrinsic": []}
            write_json(root / scene / "poses" / f"{i:04d}.json", pose)
    return root


def test_train_split_depth_in_metres_with_sky_and_invalid(root: Path, tmp_path: Path, read_clips):
    report = convert(MVSSynthConverter(root), tmp_path / "out", "train", clip_length=2)
    assert report.clips_written == 3
    clips = read_clips(tmp_path / "out")
    assert [c.key for c in clips] == [
        "mvs_synth_0000_000000",
        "mvs_synth_0000_000002",
        "mvs_synth_0001_000000",
    ]
    clip = clips[1]
    assert clip.meta["scene"] == "0000" and clip.meta["frame_ids"] == [2, 3]
    assert clip.meta["intrinsics"] == [1002.0, 1001.0, 8.0, 6.0]
    for t, frame in enumerate(clip.meta["frame_ids"]):
        expected = raw_depth("0000", frame) / 10.0
        finite = np.isfinite(expected) & (expected > 0)
        np.testing.assert_allclose(clip.depth[t][finite], expected[finite], rtol=1e-3)
        assert np.isposinf(clip.depth[t, 0, 0])
        assert np.isnan(clip.depth[t, 0, 1]) and np.isnan(clip.depth[t, 0, 2])
    assert clip.depth[0, 3, 3] == 12.0  # (100 * 1 + 10 * 2) / 10 m
    assert clip.depth[1, 6, 9] == pytest.approx(13.75, rel=1e-3)  # (100 + 30 + 7.5) / 10 m
    assert clip.frames.shape == (2, H, W, 3)


def test_val_split_holds_the_reference_validation_scenes(root: Path, tmp_path: Path, read_clips):
    convert(MVSSynthConverter(root), tmp_path / "out", "val", clip_length=2)
    clips = read_clips(tmp_path / "out", "mvs_synth-val-*.tar")
    assert [c.key for c in clips] == ["mvs_synth_0118_000000"]
    np.testing.assert_allclose(clips[0].depth[1, 4, 4], (119 * 100 + 10) / 10, rtol=1e-3)


def test_registered_and_bad_root_names_the_expected_layout(tmp_path: Path) -> None:
    assert get_converter("mvs_synth") is MVSSynthConverter
    (tmp_path / "GTAV_1080" / "notes").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no numbered scene folder") as error:
        MVSSynthConverter(tmp_path / "GTAV_1080")
    assert "0000/images/0000.png" in str(error.value)
