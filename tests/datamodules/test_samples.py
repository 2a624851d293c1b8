"""Tests for datamodules.samples: depth targets in 1/m, collation, finishing, problem messages."""

from __future__ import annotations

import pytest
import torch

from datamodules.augment import apply_colour
from datamodules.format import ShardFormatError
from datamodules.samples import (
    collate_clips,
    depth_targets,
    describe_problem,
    finish_batch,
    make_sample,
)


def test_depth_targets_turn_metres_into_inverse_depth_with_sky_and_invalid() -> None:
    depth_m = torch.tensor([4.0, float("inf"), float("nan"), 0.0, -2.0, 0.25])
    inverse_depth, valid = depth_targets(depth_m)
    assert inverse_depth.tolist() == [0.25, 0.0, 0.0, 0.0, 0.0, 4.0]
    assert valid.tolist() == [True, True, False, False, False, True]
    assert torch.isfinite(inverse_depth).all()


def _sample(frames: int, key: str, colour: list[float] | None = None) -> dict:
    meta = {"dataset": "toy", "scene": "a", "frame_ids": [7, 8, 9][:frames]}
    generator = torch.Generator().manual_seed(frames)
    decoded = torch.randint(0, 256, (frames, 4, 6, 3), generator=generator, dtype=torch.uint8)
    image = decoded.permute(0, 3, 1, 2)  # (T, 3, 4, 6), channels-last like decoded frames
    depth_m = torch.full((frames, 4, 6), 2.0)
    depth_m[:, 0] = float("inf")  # sky row
    depth_m[:, :, 5] = float("nan")  # invalid column
    parameters = None if colour is None else torch.tensor(colour)
    return make_sample(key, meta, image, depth_m, skipped=1, colour=parameters)


def test_collate_ships_uint8_frames_colour_and_float16_depth() -> None:
    batch = collate_clips([_sample(2, "k0"), _sample(2, "k1", [0.1, 1.1, 0.9, 0.02])])
    assert batch["image"].shape == (2, 2, 3, 4, 6) and batch["image"].dtype == torch.uint8
    assert batch["image"].permute(0, 1, 3, 4, 2).is_contiguous()  # stacked without transposing
    assert batch["colour"].tolist() == [[0.0, 1.0, 1.0, 0.0], pytest.approx([0.1, 1.1, 0.9, 0.02])]
    assert batch["depth"].shape == (2, 2, 4, 6) and batch["depth"].dtype == torch.float16
    assert "inverse_depth" not in batch and "valid" not in batch
    assert batch["key"] == ["k0", "k1"] and batch["dataset"] == ["toy", "toy"]
    assert batch["start_frame"].tolist() == [7, 7] and batch["start_frame"].dtype == torch.long
    assert batch["is_padding"].tolist() == [False, False]
    assert batch["skipped"].tolist() == [1, 1]


def test_finish_batch_builds_the_batch_contract_the_task_sees() -> None:
    samples = [_sample(2, "k0"), _sample(2, "k1", [0.1, 1.1, 0.9, 0.02])]
    batch = collate_clips(samples)
    finished = finish_batch(batch)
    image = finished["image"]
    assert image.shape == (2, 2, 3, 4, 6) and image.dtype == torch.float32
    assert image.is_contiguous()
    # the identity colour gives exactly frames / 255, also beside a jittered clip
    assert torch.equal(image[0], samples[0]["image"].float() / 255)
    torch.testing.assert_close(
        image[1], apply_colour(samples[1]["image"], samples[1]["colour"]), rtol=0, atol=1e-6
    )
    assert float((image[1] - samples[1]["image"].float() / 255).abs().max()) > 0.02
    # depth 2 m -> 0.5 1/m; sky row -> valid 0; NaN column -> invalid 0
    inverse_depth, valid = finished["inverse_depth"], finished["valid"]
    assert inverse_depth.dtype == torch.float32 and valid.dtype == torch.bool
    assert torch.all(inverse_depth[:, :, 1:, :5] == 0.5) and valid[:, :, :, :5].all()
    assert torch.all(inverse_depth[:, :, 0, :] == 0.0)
    assert not valid[:, :, :, 5].any() and torch.all(inverse_depth[:, :, :, 5] == 0.0)
    assert "depth" not in finished and "depth" in batch  # the input is left as it was
    assert finished["key"] == ["k0", "k1"] and torch.equal(finished["colour"], batch["colour"])
    again = finish_batch(finished)  # finishing twice changes nothing
    assert all(again[k] is finished[k] for k in finished)


def test_finish_batch_needs_the_colour_of_a_uint8_batch() -> None:
    batch = collate_clips([_sample(2, "k0")])
    del batch["colour"]
    with pytest.raises(KeyError, match="'colour'.*collate_clips"):
        finish_batch(batch)


def test_collate_refuses_clips_of_different_length_naming_keys() -> None:
    with pytest.raises(ValueError, match=r"k0.*k1.*batch size of 1"):
        collate_clips([_sample(2, "k0"), _sample(3, "k1")])


def test_problem_names_the_field_but_not_shard_and_key_again() -> None:
    error = ShardFormatError("not a readable image", "s.tar", "k", "006.jpg")
    assert describe_problem(error) == "field '006.jpg': not a readable image"
    assert describe_problem(ShardFormatError("bad", "s.tar", "k")) == "bad"
