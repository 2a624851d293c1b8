"""Tests of the clip shard format: writer, decoder, validation and error messages."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset

from datamodules.format import (
    Clip,
    ClipShardWriter,
    ShardFormatError,
    decode_clip,
    decode_depth,
    encode_clip,
    encode_depth,
    make_key,
    make_meta,
)


def smooth_clip(key: str = "toy_scene_000000", frames: int = 3, seed: int = 0) -> Clip:
    """A clip with smooth RGB gradients and random depth holding some sky and invalid pixels."""
    rng = np.random.default_rng(seed)
    height, width = 70, 126
    rows, cols = np.mgrid[0:height, 0:width]
    rgb = [
        np.stack([cols * 2 + 10 * t, rows * 3, np.full_like(rows, 128 + t)], axis=-1)
        for t in range(frames)
    ]
    depth = rng.uniform(0.3, 900.0, size=(frames, height, width)).astype(np.float32)
    depth[:, :5] = np.inf  # sky rows
    depth[:, 40, 10:20] = np.nan  # invalid pixels
    meta = make_meta("toy", "scene", list(range(10, 10 + frames)), 1, [100.0, 100.0, 62.5, 34.5])
    return Clip(key, meta, np.stack(rgb).astype(np.uint8), depth)


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


def test_make_key_follows_the_key_rules() -> None:
    assert make_key("Sintel", "alley_1", 10) == "sintel_alley_1_000010"
    assert make_key("mvs-synth", "Scene 0.01/left", 3) == "mvs-synth_scene_0_01_left_000003"
    with pytest.raises(ValueError, match="start_frame"):
        make_key("sintel", "alley_1", -1)


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


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("001.depth.npz", None, "missing"),
        ("002.jpg", None, "missing"),
        ("json", None, "missing"),
        ("001.depth.npz", encode_depth(np.ones((70, 125))), "differs from its JPEG"),
        ("001.depth.npz", b"this is not an npz archive", "not a readable npz"),
        ("001.depth.npz", encode_depth(np.ones((70, 126)))[:-40], "not a readable npz"),
        ("001.depth.npz", npz_bytes(depth=np.ones((70, 126), np.float32)), "float16"),
        ("001.depth.npz", npz_bytes(depth=np.zeros((70, 126), np.float16)), "> 0 m"),
        ("001.depth.npz", npz_bytes(disparity=np.ones((70, 126), np.float16)), "'depth'"),
        ("001.jpg", b"\xff\xd8 truncated", "not a readable image"),
        ("json", b"{not json", "JSON"),
        ("json", b'{"dataset": "toy"}', "lacks"),
        ("003.jpg", b"extra frame", "frame_ids lists 3 frames"),
    ],
)
def test_decoder_names_shard_key_and_field(field: str, value: bytes | None, message: str) -> None:
    sample = dict(encode_clip(smooth_clip()), __url__="shards/toy-000007.tar")
    if value is None:
        del sample[field]
    else:
        sample[field] = value
    with pytest.raises(ShardFormatError, match=message) as raised:
        decode_clip(sample)
    text = str(raised.value)
    assert "shards/toy-000007.tar" in text and "toy_scene_000000" in text and repr(field) in text
    assert text.count("shards/toy-000007.tar") == 1  # named once, not wrapped twice
    assert (raised.value.shard, raised.value.key, raised.value.field) == (
        "shards/toy-000007.tar",
        "toy_scene_000000",
        field,
    )


def test_depth_codec_keeps_sky_and_invalid_distinct() -> None:
    depth = np.array([[1.0, np.inf], [np.nan, 65504.0]], dtype=np.float32)
    decoded = decode_depth(encode_depth(depth))
    assert decoded[0, 0] == 1.0 and decoded[1, 1] == 65504.0
    assert np.isposinf(decoded[0, 1]) and np.isnan(decoded[1, 0])
