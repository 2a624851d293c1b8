"""Tests for datamodules.train_stream: window cutting, decoding and the endless-loop guards."""

from __future__ import annotations

import io
import random
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest

from datamodules.augment import ClipAugment
from datamodules.format import Clip, decode_clip, make_key, make_meta
from datamodules.shard_writer import encode_clip
from datamodules.shards import BadSampleWarning
from datamodules.train_stream import TrainWindows


def _stream(shard: Path, clip_length: int = 3, strides: list[int] | None = None) -> TrainWindows:
    return TrainWindows(
        sets=[[str(shard)]],
        weights=[1.0],
        strides=[strides or [1]],
        clip_length=clip_length,
        augment=ClipAugment((8, 8)),
        shuffle_buffer=1,
        batches_per_rank=2,
        batch_size=1,
        rank=0,
        seed=0,
    )


def _raw_sample(frames: int, shard: str) -> dict:
    ids = [100 + 3 * t for t in range(frames)]  # stored with stride 3 in the source
    clip = Clip(
        make_key("toy", "a", ids[0]),
        make_meta("toy", "a", ids, stride=3),
        np.zeros((frames, 8, 8, 3), np.uint8),
        np.ones((frames, 8, 8), np.float32),
    )
    return {**encode_clip(clip), "__url__": shard}


def _write(path: Path, samples: list[dict]) -> Path:
    with tarfile.open(path, "w") as archive:
        for sample in samples:
            for field, value in sample.items():
                if field.startswith("__"):
                    continue
                info = tarfile.TarInfo(f"{sample['__key__']}.{field}")
                info.size = len(value)
                archive.addfile(info, io.BytesIO(value))
    return path


def test_windows_tile_the_clip_without_overlap_at_the_drawn_stride(tmp_path: Path) -> None:
    stream = _stream(tmp_path / "unused.tar", clip_length=3, strides=[2])
    raw = _raw_sample(12, "s.tar")
    for seed in range(5):
        windows = stream._cut(raw, [2], random.Random(seed))
        assert len(windows) == 2  # span (3 - 1) * 2 + 1 = 5 frames: 12 // 5 windows
        frames = [w.frames for w in windows]
        assert all(f[1] - f[0] == f[2] - f[1] == 2 and len(f) == 3 for f in frames)
        assert frames[0][-1] < frames[1][0] and frames[1][-1] <= 11
        assert all(w.sample is raw for w in windows)  # still encoded: nothing copied
        clip = decode_clip(windows[0].sample, frames=windows[0].frames)
        assert clip.meta["frame_ids"] == [100 + 3 * t for t in frames[0]]
        assert clip.meta["stride"] == 6 and clip.frames.shape[0] == clip.depth.shape[0] == 3


def test_strides_too_long_for_the_clip_fall_back_to_those_that_fit(tmp_path: Path) -> None:
    stream = _stream(tmp_path / "unused.tar", clip_length=3, strides=[1, 4])
    windows = stream._cut(_raw_sample(6, "s.tar"), [1, 4], random.Random(0))
    assert len(windows) == 2 and all(w.frames[1] - w.frames[0] == 1 for w in windows)


def test_a_corrupt_frame_is_reported_with_its_field_in_the_shard(tmp_path: Path) -> None:
    sample = _raw_sample(6, "holey.tar")
    sample["004.jpg"] = b"not a jpeg"  # in the second window (stored frames 3, 4, 5)
    shard = _write(tmp_path / "holey.tar", [sample])
    with pytest.warns(BadSampleWarning, match=r"holey\.tar: field '004\.jpg': not a readable"):
        samples = list(_stream(shard))
    assert [s["start_frame"] for s in samples] == [100, 100]  # the first window, twice


def test_a_set_without_any_usable_window_raises_instead_of_spinning(tmp_path: Path) -> None:
    shard = _write(tmp_path / "short.tar", [_raw_sample(2, "short.tar")])  # 2 < clip_length
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="no usable window"):
        warnings.simplefilter("ignore")
        list(_stream(shard))


def test_windows_that_never_decode_raise_instead_of_spinning(tmp_path: Path) -> None:
    sample = _raw_sample(3, "broken.tar")
    for t in range(3):
        sample[f"{t:03d}.jpg"] = b"not a jpeg"
    shard = _write(tmp_path / "broken.tar", [sample])
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="failed to decode"):
        warnings.simplefilter("ignore")
        list(_stream(shard))
