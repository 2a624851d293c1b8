"""Writing clip shards: check a clip against the format, encode it as a sample, write shards.

:func:`check_clip` refuses a clip that breaks the format (see :mod:`datamodules.format`), naming
the key, the frame's field and the offending value; :func:`encode_clip` turns a checked clip into
a WebDataset sample dict; :class:`ClipShardWriter` writes such samples into numbered tar shards.
Converters, the synthetic scenes and the benchmark all write through :class:`ClipShardWriter`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import numpy as np
import webdataset
from PIL import Image

from datamodules.format import (
    FLOAT16_MAX_M,
    KEY_PATTERN,
    Clip,
    ShardFormatError,
    check_meta,
    encode_depth,
    frame_field,
)


def check_clip(clip: Clip) -> None:
    """Check a clip before writing: key, metadata, dtypes, shapes and depth values (metres).

    Raises:
        ShardFormatError: Naming the key, the field (frame) and the offending value.
    """
    key = clip.key
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ShardFormatError(
            "keys may only hold lowercase letters, digits, '_' and '-' (no dots); "
            "build one with datamodules.format.make_key",
            key=key,
        )
    check_meta(clip.meta, key)
    frames, depth = np.asarray(clip.frames), np.asarray(clip.depth)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ShardFormatError(
            f"frames must be (T, H, W, 3) uint8 RGB, got {frames.dtype} {frames.shape}", key=key
        )
    if not np.issubdtype(depth.dtype, np.floating):
        raise ShardFormatError(
            f"depth must be a float array in metres, got {depth.dtype}; integer depth is usually "
            "raw sensor units: convert it to metres (NaN for invalid, +inf for sky)",
            key=key,
        )
    if depth.shape != frames.shape[:3]:
        raise ShardFormatError(
            f"depth shape {depth.shape} differs from frames (T, H, W) {frames.shape[:3]}", key=key
        )
    if len(clip.meta["frame_ids"]) != frames.shape[0]:
        raise ShardFormatError(
            f"{frames.shape[0]} frames but {len(clip.meta['frame_ids'])} frame_ids", key=key
        )
    for t in range(depth.shape[0]):
        _check_depth_values(depth[t], key, frame_field(t, "depth.npz"))


def _check_depth_values(depth: np.ndarray, key: str, field: str) -> None:
    nearest = float(np.fmin.reduce(depth, axis=None))  # ignores NaN; -inf counts as nearest
    if nearest <= 0 or np.float16(nearest) == 0:
        raise ShardFormatError(
            f"depth {nearest!r} m; every depth must be > 0 m, also after float16 rounding "
            "(check the units are metres; mark invalid pixels NaN and sky +inf)",
            key=key,
            field=field,
        )
    farthest = float(np.fmax.reduce(np.where(np.isinf(depth), np.nan, depth), axis=None))
    if farthest > FLOAT16_MAX_M:
        raise ShardFormatError(
            f"finite depth {farthest!r} m exceeds the float16 maximum {FLOAT16_MAX_M} m; "
            "store sky as +inf and clamp or invalidate (NaN) far values",
            key=key,
            field=field,
        )


def encode_clip(clip: Clip, jpeg_quality: int = 95) -> dict[str, bytes | str]:
    """Validate a clip and encode it as a WebDataset sample dict.

    Returns:
        ``{"__key__": key, "json": bytes, "000.jpg": bytes, "000.depth.npz": bytes, ...}``.

    Raises:
        ShardFormatError: If the clip breaks the format (see :func:`check_clip`).
    """
    check_clip(clip)
    sample: dict[str, bytes | str] = {
        "__key__": clip.key,
        "json": json.dumps(clip.meta, sort_keys=True).encode("utf-8"),
    }
    for t in range(clip.frames.shape[0]):
        buffer = io.BytesIO()
        Image.fromarray(clip.frames[t]).save(buffer, format="JPEG", quality=jpeg_quality)
        sample[frame_field(t, "jpg")] = buffer.getvalue()
        sample[frame_field(t, "depth.npz")] = encode_depth(clip.depth[t])
    return sample


class ClipShardWriter:
    """Write clips into numbered tar shards, ``max_clips_per_shard`` clips each.

    Built on :class:`webdataset.ShardWriter`. Shards are closed (and ``post`` called with the
    shard file name) when full and at :meth:`close`; no shard is created before the first clip.
    Shards are split by clip count only, never by size, so shard ``i`` holds clips
    ``[i * N, (i + 1) * N)`` of the write order. Tar members carry mtime 0 so a given clip list
    gives byte-identical shards. When an exception leaves a ``with`` block, the open shard is
    closed without calling ``post``, so a partial shard never gets promoted as complete.

    Args:
        pattern: Shard file pattern with a printf field, e.g. ``"out/synthetic-train-%06d.tar"``.
        max_clips_per_shard: Clips per shard.
        jpeg_quality: JPEG quality of the RGB frames (1-100).
        start_shard: Number of the first shard.
        post: Called with each finished shard's file name (e.g. to rename a temporary file).
    """

    def __init__(
        self,
        pattern: str,
        max_clips_per_shard: int = 32,
        jpeg_quality: int = 95,
        start_shard: int = 0,
        post: Callable[[str], None] | None = None,
    ) -> None:
        if "%" not in pattern:
            raise ValueError(f"shard pattern {pattern!r} needs a printf field such as %06d")
        if max_clips_per_shard < 1:
            raise ValueError(f"max_clips_per_shard must be >= 1, got {max_clips_per_shard}")
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
        self.pattern = pattern
        self.max_clips_per_shard = max_clips_per_shard
        self.jpeg_quality = jpeg_quality
        self.start_shard = start_shard
        self.post = post
        self.clips_written = 0
        self._writer: webdataset.ShardWriter | None = None

    def write(self, clip: Clip) -> None:
        """Validate and append one clip.

        Raises:
            ShardFormatError: If the clip breaks the format; nothing is written then.
        """
        sample = encode_clip(clip, self.jpeg_quality)
        if self._writer is None:
            self._writer = webdataset.ShardWriter(
                self.pattern,
                maxcount=self.max_clips_per_shard,
                maxsize=float("inf"),
                post=self.post,
                start_shard=self.start_shard,
                verbose=0,
                encoder=False,
                mtime=0,
                format="PAX_FORMAT",
            )
        self._writer.write(sample)
        self.clips_written += 1

    def close(self) -> None:
        """Finish the last shard."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ClipShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is not None and self._writer is not None:
            self._writer.post = None  # a shard cut short by an error must not look finished
        self.close()
