"""Tests for datamodules.shards: shard patterns, the tar index and tolerant tar reading."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from datamodules.shards import (
    SHARD_START,
    BadSampleWarning,
    SkipCounter,
    distributed_position,
    expand_shards,
    index_shard,
    read_samples,
    read_shard,
)


def _tar(path: Path, samples: dict[str, list[str]]) -> Path:
    """A tar with members ``key.field`` holding a few bytes each, samples in order."""
    with tarfile.open(path, "w") as archive:
        for key, fields in samples.items():
            for field in fields:
                data = f"{key}/{field}".encode() * 20
                info = tarfile.TarInfo(f"{key}.{field}")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


def test_patterns_globs_folders_and_lists_expand_in_order(tmp_path: Path) -> None:
    for index in range(3):
        _tar(tmp_path / f"set-{index:06d}.tar", {f"k{index}": ["json"]})
    names = [f"set-{i:06d}.tar" for i in range(3)]
    expected = [str(tmp_path / name) for name in names]
    assert expand_shards(str(tmp_path / "set-{000000..000002}.tar")) == expected
    assert expand_shards(str(tmp_path / "set-*.tar")) == expected
    assert expand_shards(str(tmp_path)) == expected
    assert expand_shards([expected[2], expected[0]]) == [expected[2], expected[0]]


def test_a_missing_shard_in_a_range_names_pattern_and_file(tmp_path: Path) -> None:
    _tar(tmp_path / "set-000000.tar", {"k": ["json"]})
    pattern = str(tmp_path / "set-{000000..000001}.tar")
    with pytest.raises(FileNotFoundError, match=r"set-\{000000\.\.000001\}.*set-000001\.tar"):
        expand_shards(pattern)
    with pytest.raises(FileNotFoundError, match="nothing matched"):
        expand_shards(str(tmp_path / "other-*.tar"))


def test_clips_are_indexed_from_headers_and_samples_grouped_by_key(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "a.tar", {"one": ["json", "000.jpg"], "two": ["json", "000.jpg"]})
    entries = index_shard(str(shard))
    assert [(e.key, e.damage) for e in entries] == [("one", None), ("two", None)]
    files = [(field, size) for field, _, size in entries[1].files]
    assert files == [("json", len(b"two/json") * 20), ("000.jpg", len(b"two/000.jpg") * 20)]
    samples = list(read_shard(str(shard), SkipCounter().skip))
    assert [s["__key__"] for s in samples] == ["one", "two"]
    assert set(samples[1]) == {"__key__", "__url__", "json", "000.jpg"}
    assert samples[1]["000.jpg"] == b"two/000.jpg" * 20


def test_a_subset_of_samples_is_read_by_seeking_in_the_order_given(tmp_path: Path) -> None:
    a = _tar(tmp_path / "a.tar", {f"a{i}": ["json", "000.jpg"] for i in range(4)})
    b = _tar(tmp_path / "b.tar", {"b0": ["json"]})
    entries = [*index_shard(str(a)), *index_shard(str(b))]
    samples = list(read_samples([entries[4], entries[2], entries[1]], SkipCounter().skip))
    assert [(s["__key__"], s["__url__"]) for s in samples] == [
        ("b0", str(b)), ("a2", str(a)), ("a1", str(a)),
    ]  # fmt: skip
    assert samples[1] == {
        "__key__": "a2", "__url__": str(a), "json": b"a2/json" * 20, "000.jpg": b"a2/000.jpg" * 20,
    }  # fmt: skip


def test_truncated_shard_yields_complete_samples_then_warns_once(tmp_path: Path) -> None:
    fields = ["json", "000.jpg", "001.jpg"]
    shard = _tar(tmp_path / "a.tar", {f"k{i}": fields for i in range(4)})
    data = shard.read_bytes()
    shard.write_bytes(data[: data.index(b"k2/001.jpg") + 5])  # cut inside k2's last member
    counter = SkipCounter()
    with pytest.warns(BadSampleWarning, match=r"'k2' of shard .*a\.tar: unreadable tar") as record:
        samples = list(read_shard(str(shard), counter.skip))
    assert [s["__key__"] for s in samples] == ["k0", "k1"]
    assert len(record) == 1 and counter.take() == 1 and counter.take() == 0
    entries = index_shard(str(shard))
    assert [e.key for e in entries] == ["k0", "k1", "k2"]
    assert [e.damage is None for e in entries] == [True, True, False]


def test_a_file_that_is_not_a_tar_is_one_damaged_entry(tmp_path: Path) -> None:
    shard = tmp_path / "garbage.tar"
    shard.write_bytes(b"\x00\x17 not a tar archive" * 40)
    [entry] = index_shard(str(shard))
    assert entry.key == SHARD_START and entry.files == () and entry.damage
    counter = SkipCounter()
    with pytest.warns(BadSampleWarning, match=r"garbage\.tar: unreadable tar"):
        assert list(read_shard(str(shard), counter.skip)) == []
    assert counter.take() == 1
    shard.unlink()  # a shard that vanished after it was listed is skipped the same way
    [entry] = index_shard(str(shard))
    assert entry.key == SHARD_START and "No such file" in entry.damage


def test_a_shard_rewritten_after_indexing_is_indexed_again(tmp_path: Path) -> None:
    shard = _tar(tmp_path / "a.tar", {"one": ["json"]})
    assert [e.key for e in index_shard(str(shard))] == ["one"]
    _tar(shard, {"one": ["json"], "two": ["json"], "three": ["json"]})
    assert [e.key for e in index_shard(str(shard))] == ["one", "two", "three"]


def test_skip_counter_warns_once_per_shard_and_key_but_counts_every_skip() -> None:
    counter = SkipCounter()
    with pytest.warns(BadSampleWarning) as record:
        for _ in range(3):
            counter.skip("s.tar", "k", "bad")
        counter.skip("s.tar", "other", "bad")
    assert len(record) == 2 and counter.take() == 4


def test_rank_and_world_size_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed_position() == (2, 3)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert distributed_position() == (0, 1)


def test_a_rank_outside_the_world_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK=3 is outside WORLD_SIZE=2"):
        distributed_position()
