"""Ground-truth videos: listed from json and tar headers, depth read a frame range at a time."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from flashdepth.evaluate import EvaluationError
from flashdepth.evaluate.ground_truth import frame_size, list_videos, read_targets
from tests.evaluate.fakes import known_depth, write_shards


def test_videos_are_listed_in_shard_order_with_their_metadata(tmp_path) -> None:
    videos = [("sintel", "alley_1", known_depth(0), [3, 4, 5, 6, 7]),
              ("sintel", "market_2", known_depth(1), [0, 2, 4, 6, 8]),
              ("kitti", "drive_1", known_depth(2), [0, 1, 2, 3, 4])]  # fmt: skip
    listed = list_videos(write_shards(tmp_path, videos))
    assert [(v.dataset, v.scene, v.frame_ids) for v in listed] == [
        (dataset, scene, tuple(ids)) for dataset, scene, _, ids in videos
    ]
    assert [v.key for v in listed] == ["sintel_alley_1_000003", "sintel_market_2_000000",
                                       "kitti_drive_1_000000"]  # fmt: skip
    assert listed[0].describe() == "sintel/alley_1 (key sintel_alley_1_000003)"
    assert frame_size(listed[0]) == (12, 16)


def test_targets_are_inverse_depth_with_sky_zero_and_nan_invalid(tmp_path) -> None:
    depth = known_depth(0)
    (video,) = list_videos(write_shards(tmp_path, [("sintel", "alley_1", depth, list(range(5)))]))
    inverse, valid = read_targets(video, range(2, 4))
    assert inverse.shape == (2, 12, 16) and valid.dtype.is_floating_point is False
    stored = depth[2:4].astype(np.float16).astype(np.float32)  # shards keep float16 metres
    assert bool(valid[:, :2].all()) and float(inverse[:, :2].abs().max()) == 0.0  # sky
    assert not bool(valid[:, -2:, :2].any())  # the NaN corner
    finite = np.isfinite(stored)
    np.testing.assert_array_equal(inverse.numpy()[finite], (1 / stored)[finite])


def test_two_samples_with_one_key_are_refused(tmp_path) -> None:
    write_shards(tmp_path / "a", [("sintel", "alley_1", known_depth(0), list(range(5)))])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with pytest.raises(EvaluationError, match="'sintel_alley_1_000000' is in both"):
        list_videos([str(tmp_path / "a"), str(tmp_path / "b")])


def test_a_truncated_shard_is_named(tmp_path) -> None:
    write_shards(tmp_path, [("sintel", "alley_1", known_depth(0), list(range(5)))])
    (shard,) = tmp_path.glob("*.tar")
    shard.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(
        EvaluationError, match=rf"shard {shard}, .*'sintel_alley_1_000000'.*re-create"
    ):
        list_videos(str(tmp_path))


def test_no_shards_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(EvaluationError, match="does not match existing shard files"):
        list_videos(str(tmp_path / "missing-{000000..000003}.tar"))
