"""Dynamic Replica converter on a tiny fake split folder in the real layout."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.dynamic_replica import DynamicReplicaConverter

H, W = 12, 16
SEQUENCES = {
    "aa11-1_obj_source_left": 4,
    "bb22-2_obj_source_left": 2,
    "bb22-2_obj_source_right": 2,  # right camera: not converted
    "009850-3_obj_source_left": 2,  # excluded from train (invalid per the reference)
}
VIEWPOINTS = {  # sequence -> (intrinsics_format, focal_length, principal_point) in NDC
    "aa11-1_obj_source_left": ("ndc_isotropic", [1.5, 1.5], [0.5, -0.25]),
    "bb22-2_obj_source_left": ("ndc_norm_image_bounds", [2.0, 3.0], [0.0, 0.0]),
}


def depth_m(frame: int) -> np.ndarray:
    depth = np.full((H, W), 1.25 + 0.5 * frame, dtype=np.float32)
    depth[0, 0], depth[0, 1], depth[0, 2] = 0.0, np.inf, np.nan
    depth[6:, :] = 3.1416
    return depth


@pytest.fixture
def root(tmp_path: Path, write_rgb, write_float16_png, make_rgb) -> Path:
    root = tmp_path / "dynamic_replica"
    annotations = []
    for seq, frames in SEQUENCES.items():
        for i in range(frames):
            image = root / "train" / seq / "images" / f"{seq}-{i:04d}.png"
            write_rgb(image, make_rgb(H, W, i))
            write_float16_png(
                root / "train" / seq / "depths" / f"{seq}_{i:04d}.geometric.png", depth_m(i)
            )
            if seq in VIEWPOINTS:
                kind, focal, centre = VIEWPOINTS[seq]
                viewpoint = {
                    "intrinsics_format": kind,
                    "focal_length": focal,
                    "principal_point": centre,
                }
                annotations.append(
                    {
                        "image": {"path": f"{seq}/images/{image.name}", "size": [H, W]},
                        "viewpoint": viewpoint,
                    }
                )
    with gzip.open(root / "train" / "frame_annotations_train.jgz", "wt", encoding="utf-8") as file:
        json.dump(annotations, file)
    return root


def test_float16_bits_become_metres_and_ndc_intrinsics_pixels(
    root: Path, tmp_path: Path, read_clips
):
    report = convert(DynamicReplicaConverter(root), tmp_path / "out", "train", clip_length=2)
    assert report.clips_written == 3
    clips = read_clips(tmp_path / "out")
    assert [c.key for c in clips] == [
        "dynamic_replica_aa11-1_obj_source_left_000000",
        "dynamic_replica_aa11-1_obj_source_left_000002",
        "dynamic_replica_bb22-2_obj_source_left_000000",
    ]
    clip = clips[1]
    assert clip.meta["frame_ids"] == [2, 3]
    assert clip.meta["intrinsics"] == [9.0, 9.0, 5.0, 7.5]  # isotropic: scale min(W, H) / 2 = 6
    assert clips[2].meta["intrinsics"] == [16.0, 18.0, 8.0, 6.0]  # per-axis scale (8, 6)
    assert clip.depth[0, 3, 3] == 2.25 and clip.depth[1, 3, 3] == 2.75  # exact in float16
    np.testing.assert_allclose(clip.depth[:, 8, 8], 3.1416, rtol=1e-3)
    for t in range(2):  # 0, inf and NaN are all invalid indoors
        assert np.isnan(clip.depth[t, 0, :3]).all()
    assert not np.isinf(clip.depth).any()


def test_without_annotation_file_intrinsics_are_null(root: Path) -> None:
    (root / "train" / "frame_annotations_train.jgz").unlink()
    clips = DynamicReplicaConverter(root).list_clips("train", clip_length=2)
    assert len(clips) == 3 and all(c.extra["intrinsics"] is None for c in clips)


def test_missing_depth_and_bad_root_are_named(root: Path, tmp_path: Path) -> None:
    seq = "bb22-2_obj_source_left"
    (root / "train" / seq / "depths" / f"{seq}_0001.geometric.png").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{seq}: 1 RGB frame\(s\) have no depth"):
        DynamicReplicaConverter(root).list_clips("train", clip_length=2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no split folder"):
        DynamicReplicaConverter(tmp_path / "empty")
