"""Tests of the clip shard format: keys, the metadata parser, the decoder, error messages."""

from __future__ import annotations

import io

import numpy as np
import pytest

from datamodules.format import (
    Clip,
    ShardFormatError,
    decode_clip,
    decode_depth,
    encode_depth,
    make_key,
    make_meta,
)
from datamodules.shard_writer import encode_clip


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


def test_make_key_follows_the_key_rules() -> None:
    assert make_key("Sintel", "alley_1", 10) == "sintel_alley_1_000010"
    assert make_key("mvs-synth", "Scene 0.01/left", 3) == "mvs-synth_scene_0_01_left_000003"
    with pytest.raises(ValueError, match="start_frame"):
        make_key("sintel", "alley_1", -1)


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


def test_decoding_a_window_takes_only_its_frames_and_names_stored_fields() -> None:
    sample = dict(encode_clip(smooth_clip(frames=5)), __url__="shards/toy-000007.tar")
    whole = decode_clip(sample)
    window = decode_clip(sample, frames=range(1, 5, 2))
    np.testing.assert_array_equal(window.frames, whole.frames[[1, 3]])
    np.testing.assert_array_equal(window.depth, whole.depth[[1, 3]])
    assert window.meta == dict(whole.meta, frame_ids=[11, 13], stride=2)
    sample["003.jpg"] = b"\xff\xd8 truncated"
    assert decode_clip(sample, frames=range(0, 3)).meta["frame_ids"] == [10, 11, 12]
    with pytest.raises(ShardFormatError, match="not a readable image") as raised:
        decode_clip(sample, frames=range(1, 5, 2))
    assert raised.value.field == "003.jpg"  # the field as stored, not renumbered in the window
    with pytest.raises(ValueError, match=r"range\(4, 6\) is not a range within the 5 frames"):
        decode_clip(sample, frames=range(4, 6))
