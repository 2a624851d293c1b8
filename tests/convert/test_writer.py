"""Tests of the conversion run: shards, manifest, resuming, refusing to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from datamodules.convert.writer import convert
from tests.convert.test_base import ToyConverter


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    (tmp_path / "raw" / "scenes").mkdir(parents=True)
    return tmp_path / "raw"


def test_convert_writes_shards_manifest_and_report(raw: Path, tmp_path: Path, read_clips) -> None:
    out = tmp_path / "out"
    report = convert(ToyConverter(raw), out, "train", clip_length=2, clips_per_shard=2)
    assert sorted(p.name for p in out.iterdir()) == [
        "toy-train-000000.tar",
        "toy-train-000001.tar",
        "toy-train.manifest.json",
    ]
    assert (report.clips_written, report.clips_skipped) == (3, 0)
    assert (
        report.shards
        == report.shards_written
        == [
            out / "toy-train-000000.tar",
            out / "toy-train-000001.tar",
        ]
    )
    assert report.scenes_skipped == ["c"] and report.seconds > 0
    clips = read_clips(out)
    assert [c.key for c in clips] == ["toy_a_000010", "toy_a_000012", "toy_b_000010"]
    assert clips[1].meta["frame_ids"] == [12, 13]
    assert clips[1].meta["intrinsics"] == [100.0, 101.0, 4.0, 3.0]
    depth = clips[1].depth
    assert depth[0, 2, 2] == 13.0 and depth[1, 2, 2] == 14.0
    assert np.isposinf(depth[:, 0, 0]).all() and np.isnan(depth[:, 0, 1]).all()
    assert np.abs(clips[1].frames[1].astype(int) - 130).max() <= 2  # JPEG of a flat image
    manifest = json.loads((out / "toy-train.manifest.json").read_text())
    assert manifest == {
        "converter": "toy",
        "split": "train",
        "clip_length": 2,
        "stride": 1,
        "clips_per_shard": 2,
        "num_clips": 3,
        "format_version": 1,
        "root": str(raw),
        "units": ToyConverter.units,
        "complete": True,
        "shards": ["toy-train-000000.tar", "toy-train-000001.tar"],
    }


def test_rerun_rewrites_only_the_missing_shard(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert(ToyConverter(raw), out, "train", clip_length=2, clips_per_shard=2, progress=False)
    first, second = out / "toy-train-000000.tar", out / "toy-train-000001.tar"
    original = first.read_bytes()
    second_mtime = second.stat().st_mtime_ns
    first.unlink()
    (out / "toy-train-000000.tar.partial").write_bytes(b"left over from a crash")

    converter = ToyConverter(raw)
    report = convert(converter, out, "train", clip_length=2, clips_per_shard=2, progress=False)
    assert converter.loaded == ["toy_a_000010", "toy_a_000012"]
    assert (report.clips_written, report.clips_skipped) == (2, 1)
    assert report.shards_written == [first]
    assert first.read_bytes() == original  # deterministic, byte-identical shard
    assert second.stat().st_mtime_ns == second_mtime
    assert not list(out.glob("*.partial"))


def test_interrupted_shard_stays_partial_and_is_redone(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # clip_length 1: 9 clips, shards [a10 a11] [a12 a13] [a14 b10] [b11 b12] [c10]
    crashing = ToyConverter(raw, fail_on="toy_b_000010")
    with pytest.raises(OSError, match="cannot read b0"):
        convert(crashing, out, "train", clip_length=1, clips_per_shard=2, progress=False)
    assert sorted(p.name for p in out.glob("*.tar*")) == [
        "toy-train-000000.tar",
        "toy-train-000001.tar",
        "toy-train-000002.tar.partial",
    ]
    assert json.loads((out / "toy-train.manifest.json").read_text())["complete"] is False

    converter = ToyConverter(raw)
    report = convert(converter, out, "train", clip_length=1, clips_per_shard=2, progress=False)
    assert converter.loaded == [
        "toy_a_000014",
        "toy_b_000010",
        "toy_b_000011",
        "toy_b_000012",
        "toy_c_000010",
    ]
    assert report.clips_skipped == 4
    assert len(list(out.glob("*.tar"))) == 5 and not list(out.glob("*.partial"))


def test_other_configuration_is_refused_unless_overwrite(raw: Path, tmp_path: Path, read_clips):
    out = tmp_path / "out"
    convert(ToyConverter(raw), out, "train", clip_length=2, clips_per_shard=1, progress=False)
    assert len(list(out.glob("*.tar"))) == 3
    with pytest.raises(FileExistsError, match="clip_length: existing 2, requested 3") as error:
        convert(ToyConverter(raw), out, "train", clip_length=3, clips_per_shard=1)
    assert "overwrite=True (--overwrite)" in str(error.value)
    assert len(list(out.glob("*.tar"))) == 3  # nothing lost

    report = convert(
        ToyConverter(raw), out, "train", clip_length=3, clips_per_shard=1, overwrite=True
    )
    assert report.clips_written == 2
    assert sorted(p.name for p in out.glob("*.tar")) == [
        "toy-train-000000.tar",
        "toy-train-000001.tar",
    ]
    assert [c.key for c in read_clips(out)] == ["toy_a_000010", "toy_b_000010"]
    assert all(c.meta["frame_ids"] == [10, 11, 12] for c in read_clips(out))


def test_shards_without_manifest_are_refused(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "toy-train-000000.tar").write_bytes(b"")
    with pytest.raises(FileExistsError, match="no manifest toy-train.manifest.json"):
        convert(ToyConverter(raw), out, "train", clip_length=2)
    assert (out / "toy-train-000000.tar").exists()


def test_other_split_or_converter_in_the_same_folder_is_kept(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "other-train-000000.tar").write_bytes(b"x")
    convert(ToyConverter(raw), out, "train", clip_length=2, clips_per_shard=8, overwrite=True)
    assert (out / "other-train-000000.tar").read_bytes() == b"x"


def test_no_clip_long_enough_is_an_error(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no scene under .* has the 9 frames one clip needs"):
        convert(ToyConverter(raw), tmp_path / "out", "train", clip_length=9)
    with pytest.raises(ValueError, match="clips_per_shard must be >= 1"):
        convert(ToyConverter(raw), tmp_path / "out", "train", clip_length=2, clips_per_shard=0)


def test_output_folder_with_a_percent_sign(raw: Path, tmp_path: Path, read_clips) -> None:
    out = tmp_path / "shards%d"
    convert(ToyConverter(raw), out, "train", clip_length=2, clips_per_shard=2, progress=False)
    assert sorted(p.name for p in out.glob("*.tar")) == [
        "toy-train-000000.tar",
        "toy-train-000001.tar",
    ]
    assert len(read_clips(out)) == 3
