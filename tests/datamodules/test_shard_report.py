"""Tests of datamodules.shard_report: exact counts, fractions and percentiles; errors reported."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset

from datamodules.format import Clip, make_key, make_meta
from datamodules.shard_report import format_report, inspect_shards
from datamodules.shard_writer import ClipShardWriter, encode_clip


def known_clip(dataset: str, index: int, nan: int, sky: int, shape=(2, 10, 12)) -> Clip:
    """A clip with exactly ``nan`` invalid and ``sky`` sky pixels in its first frame."""
    rng = np.random.default_rng(index)
    depth = rng.uniform(0.5, 300.0, size=shape).astype(np.float32)
    flat = depth[0].reshape(-1)
    flat[:nan] = np.nan
    flat[nan : nan + sky] = np.inf
    frames = np.full((*shape, 3), 90, np.uint8)
    meta = make_meta(dataset, f"scene{index}", list(range(shape[0])))
    return Clip(make_key(dataset, f"scene{index}", 0), meta, frames, depth)


@pytest.fixture
def shards(tmp_path: Path) -> tuple[list[Clip], str]:
    clips = [
        known_clip("alpha", 0, nan=7, sky=11),
        known_clip("alpha", 1, nan=0, sky=30),
        known_clip("beta", 2, nan=5, sky=0, shape=(3, 8, 6)),
    ]
    with ClipShardWriter(str(tmp_path / "mix-%06d.tar"), 2) as writer:
        for clip in clips:
            writer.write(clip)
    return clips, str(tmp_path / "mix-{000000..000001}.tar")


def test_counts_fractions_and_percentiles_are_exact(shards: tuple[list[Clip], str]) -> None:
    clips, pattern = shards
    report = inspect_shards(pattern)
    assert report.errors == [] and report.duplicate_keys == []
    assert sorted(report.datasets) == ["alpha", "beta"]
    alpha, beta = report.datasets["alpha"], report.datasets["beta"]
    assert (alpha.clips, alpha.frames, beta.clips, beta.frames) == (2, 4, 1, 3)
    assert dict(alpha.resolutions) == {(10, 12): 2} and dict(beta.resolutions) == {(8, 6): 1}
    assert alpha.invalid_fraction == 7 / 480 and alpha.sky_fraction == 41 / 480
    assert beta.invalid_fraction == 5 / 144 and beta.sky_fraction == 0.0

    stored = np.concatenate([c.depth.astype(np.float16).ravel() for c in clips[:2]])
    finite = stored[np.isfinite(stored)].astype(np.float64)
    assert alpha.valid_finite_pixels == finite.size
    for q in (1, 50, 99):
        assert alpha.depth_percentile(q) == np.percentile(finite, q, method="inverted_cdf")
    assert alpha.depth_percentile(0) == finite.min()
    assert alpha.depth_percentile(100) == finite.max()
    total = report.total
    assert total.clips == 3 and total.pixels == 480 + 144


def test_report_text_lists_datasets_and_fractions(shards: tuple[list[Clip], str]) -> None:
    text = format_report(inspect_shards(shards[1]))
    assert "shards: 2   clips: 3   frames: 7   decode errors: 0" in text
    assert "alpha" in text and "beta" in text and "(all)" in text
    assert f"{7 / 480:.2%}" in text and f"{41 / 480:.2%}" in text
    assert "10x12: 2" in text and "8x6: 1" in text


def test_corrupt_shards_are_reported_and_the_rest_is_counted(
    shards: tuple[list[Clip], str], tmp_path: Path
) -> None:
    truncated = tmp_path / "broken-000000.tar"
    shutil.copy(tmp_path / "mix-000000.tar", truncated)
    with tarfile.open(truncated) as tar:
        cut = [m for m in tar.getmembers() if m.name.startswith("alpha_scene1")][1]
    with open(truncated, "r+b") as handle:
        handle.truncate(cut.offset_data + 100)  # inside the second file of the second clip
    sample = encode_clip(known_clip("gamma", 3, nan=1, sky=1))
    del sample["001.depth.npz"]
    with webdataset.TarWriter(str(tmp_path / "holey-000000.tar"), encoder=False) as writer:
        writer.write(sample)
        writer.write(encode_clip(known_clip("gamma", 4, nan=1, sky=1)))

    report = inspect_shards([str(truncated), str(tmp_path / "holey-000000.tar"), shards[1]])
    assert len(report.errors) == 2
    by_shard = {Path(e.shard).name: e for e in report.errors}
    assert by_shard["broken-000000.tar"].key is None
    assert "unreadable tar" in by_shard["broken-000000.tar"].message
    holey = by_shard["holey-000000.tar"]
    assert (holey.key, holey.field) == ("gamma_scene3_000000", "001.depth.npz")
    assert report.datasets["gamma"].clips == 1
    assert report.datasets["alpha"].clips == 2 + 1  # intact shard + the clip before the cut
    assert "after 1 clip" in by_shard["broken-000000.tar"].message
    text = format_report(report)
    assert "decode errors (2)" in text and "'001.depth.npz'" in text


def test_duplicate_keys_are_listed(shards: tuple[list[Clip], str]) -> None:
    report = inspect_shards([shards[1], shards[1]])
    assert sorted(report.duplicate_keys) == ["alpha_scene0_000000", "alpha_scene1_000000",
                                             "beta_scene2_000000"]  # fmt: skip


def test_shards_are_found_by_pattern_glob_or_folder_and_missing_ones_named(
    shards: tuple[list[Clip], str], tmp_path: Path
) -> None:
    for patterns in (shards[1], str(tmp_path / "mix-*.tar"), str(tmp_path)):
        report = inspect_shards(patterns)
        assert [Path(p).name for p in report.shards] == ["mix-000000.tar", "mix-000001.tar"]
        assert report.total.clips == 3
    with pytest.raises(FileNotFoundError, match="mix-000002.tar"):
        inspect_shards(str(tmp_path / "mix-{000000..000002}.tar"))
    with pytest.raises(FileNotFoundError, match="nothing matched"):
        inspect_shards(str(tmp_path / "nothing-*.tar"))
