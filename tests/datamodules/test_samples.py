"""Tests for datamodules.samples: depth targets in 1/m, collation, problem messages."""

from __future__ import annotations

import pytest
import torch

from datamodules.format import ShardFormatError
from datamodules.samples import collate_clips, depth_targets, describe_problem, make_sample


def test_depth_targets_turn_metres_into_inverse_depth_with_sky_and_invalid() -> None:
    depth_m = torch.tensor([4.0, float("inf"), float("nan"), 0.0, -2.0, 0.25])
    inverse_depth, valid = depth_targets(depth_m)
    assert inverse_depth.tolist() == [0.25, 0.0, 0.0, 0.0, 0.0, 4.0]
    assert valid.tolist() == [True, True, False, False, False, True]
    assert torch.isfinite(inverse_depth).all()


def _sample(frames: int, key: str) -> dict:
    meta = {"dataset": "toy", "scene": "a", "frame_ids": [7, 8, 9][:frames]}
    image = torch.zeros(frames, 3, 4, 6)
    inverse_depth, valid = depth_targets(torch.full((frames, 4, 6), 2.0))
    return make_sample(key, meta, image, inverse_depth, valid, skipped=1)


def test_collate_builds_the_batch_contract() -> None:
    batch = collate_clips([_sample(2, "k0"), _sample(2, "k1")])
    assert batch["image"].shape == (2, 2, 3, 4, 6)
    assert batch["inverse_depth"].shape == batch["valid"].shape == (2, 2, 4, 6)
    assert batch["key"] == ["k0", "k1"] and batch["dataset"] == ["toy", "toy"]
    assert batch["start_frame"].tolist() == [7, 7] and batch["start_frame"].dtype == torch.long
    assert batch["is_padding"].tolist() == [False, False]
    assert batch["skipped"].tolist() == [1, 1]


def test_collate_refuses_clips_of_different_length_naming_keys() -> None:
    with pytest.raises(ValueError, match=r"k0.*k1.*batch size of 1"):
        collate_clips([_sample(2, "k0"), _sample(3, "k1")])


def test_problem_names_the_field_but_not_shard_and_key_again() -> None:
    error = ShardFormatError("not a readable image", "s.tar", "k", "006.jpg")
    assert describe_problem(error) == "field '006.jpg': not a readable image"
    assert describe_problem(ShardFormatError("bad", "s.tar", "k")) == "bad"
