"""Tests of datamodules.shard_writer: what the writer puts in shards and what it refuses."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset

from datamodules.format import ShardFormatError, decode_clip
from datamodules.shard_writer import ClipShardWriter
from tests.datamodules.test_format import smooth_clip


def test_round_trip_through_tar_shards(tmp_path: Path) -> None:
    clips = [smooth_clip(f"toy_scene_{i:06d}", seed=i) for i in range(3)]
    finished: list[str] = []
    with ClipShardWriter(str(tmp_path / "toy-%06d.tar"), 2, post=finished.append) as writer:
        for clip in clips:
            writer.write(clip)
    assert [Path(p).name for p in finished] == ["toy-000000.tar", "toy-000001.tar"]

    samples = webdataset.WebDataset(str(tmp_path / "toy-{000000..000001}.tar"), shardshuffle=False)
    decoded = [decode_clip(sample) for sample in samples]
    assert [clip.key for clip in decoded] == [clip.key for clip in clips]
    for original, clip in zip(clips, decoded, strict=True):
        expected = original.depth.astype(np.float16).astype(np.float32)
        assert clip.depth.dtype == np.float32
        np.testing.assert_array_equal(clip.depth, expected)  # NaN positions compare equal
        assert np.array_equal(np.isposinf(clip.depth), np.isposinf(original.depth))
        assert np.array_equal(np.isnan(clip.depth), np.isnan(original.depth))
        assert clip.frames.dtype == np.uint8 and clip.frames.shape == original.frames.shape
        error = np.abs(clip.frames.astype(float) - original.frames).mean()
        assert error < 3.0
        assert clip.meta == original.meta


def test_samples_are_contiguous_and_named_by_the_format(tmp_path: Path) -> None:
    with ClipShardWriter(str(tmp_path / "toy-%06d.tar"), 8) as writer:
        writer.write(smooth_clip("first_a_000000", frames=2))
        writer.write(smooth_clip("second_b_000000", frames=2))
    with tarfile.open(tmp_path / "toy-000000.tar") as tar:
        names = tar.getnames()
    assert names == [
        "first_a_000000.000.depth.npz",
        "first_a_000000.000.jpg",
        "first_a_000000.001.depth.npz",
        "first_a_000000.001.jpg",
        "first_a_000000.json",
        "second_b_000000.000.depth.npz",
        "second_b_000000.000.jpg",
        "second_b_000000.001.depth.npz",
        "second_b_000000.001.jpg",
        "second_b_000000.json",
    ]


def test_shards_hold_a_fixed_number_of_clips(tmp_path: Path) -> None:
    with ClipShardWriter(str(tmp_path / "toy-%06d.tar"), 2) as writer:
        for i in range(5):
            writer.write(smooth_clip(f"toy_{i}", frames=1))
    counts = [sum(1 for _ in webdataset.WebDataset(str(p), shardshuffle=False)) for p in
              sorted(tmp_path.glob("*.tar"))]  # fmt: skip
    assert counts == [2, 2, 1]


def test_an_error_inside_the_writer_block_does_not_finish_the_shard(tmp_path: Path) -> None:
    finished: list[str] = []
    with (
        pytest.raises(RuntimeError),
        ClipShardWriter(str(tmp_path / "toy-%06d.tar.partial"), 4, post=finished.append) as writer,
    ):
        writer.write(smooth_clip(frames=1))
        raise RuntimeError("conversion failed")
    assert finished == []
    assert (tmp_path / "toy-000000.tar.partial").exists()


@pytest.mark.parametrize(
    ("change", "message", "field"),
    [
        (lambda c: setattr(c, "key", "toy.scene_000000"), "no dots", None),
        (lambda c: c.depth.__setitem__((1, 3, 4), 70000.0), "float16 maximum", "001.depth.npz"),
        (lambda c: c.depth.__setitem__((1, 3, 4), -2.0), "> 0 m", "001.depth.npz"),
        (lambda c: c.depth.__setitem__((2, 3, 4), -np.inf), "> 0 m", "002.depth.npz"),
        (lambda c: c.depth.__setitem__((0, 3, 4), 1e-9), "float16 rounding", "000.depth.npz"),
        (lambda c: setattr(c, "depth", np.ones(c.depth.shape, np.uint16)), "uint16", None),
        (lambda c: setattr(c, "frames", c.frames.astype(np.float32)), "uint8", None),
        (lambda c: setattr(c, "depth", c.depth[:, :-1]), "differs from frames", None),
        (lambda c: c.meta.__setitem__("frame_ids", [1, 2]), "frame_ids", None),
        (lambda c: c.meta.__setitem__("depth_units", "mm"), "metres", "json"),
    ],
)
def test_writer_rejects_a_malformed_clip_and_writes_nothing(
    tmp_path: Path, change, message: str, field: str | None
) -> None:
    clip = smooth_clip()
    change(clip)
    with pytest.raises(ShardFormatError, match=message) as raised:
        with ClipShardWriter(str(tmp_path / "toy-%06d.tar")) as writer:
            writer.write(clip)
    assert clip.key in str(raised.value)
    assert raised.value.field == field
    if field is not None:
        assert repr(field) in str(raised.value)
    assert list(tmp_path.iterdir()) == []
