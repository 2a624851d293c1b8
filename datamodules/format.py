"""The clip shard format: one WebDataset sample per video clip, depth in metres.

A shard is a plain (uncompressed) tar file. It holds one sample per clip; the files of a sample
are stored next to each other (contiguous) and share the sample key as the part of their name
before the first dot. For a clip of T frames with key ``KEY`` the files are::

    KEY.000.depth.npz   KEY.000.jpg   KEY.001.depth.npz   KEY.001.jpg  ...  KEY.json

``NNN`` is the 3-digit index of the frame *within the clip* (000 .. T-1, so at most 1000 frames
per clip); the original frame numbers are in the json. Tar member order inside a sample does not
matter to the reader, but all members of one sample must be contiguous.

Key rules:
    Only lowercase letters, digits, ``_`` and ``-`` (no dots: WebDataset splits a file name into
    key and field at the first dot). Unique within a shard set. :func:`make_key` builds
    ``{dataset}_{scene}_{first frame id:06d}``, e.g. ``sintel_alley_1_000010``.

``KEY.json`` (UTF-8 JSON object):
    ``dataset`` (str), ``scene`` (str), ``frame_ids`` (list of T ints: the frame numbers in the
    source sequence), ``stride`` (int >= 1: step between consecutive ``frame_ids``),
    ``intrinsics`` (``[fx, fy, cx, cy]`` in pixels of the stored resolution, or ``null`` when
    unknown), ``depth_units`` (always ``"m"``), ``format_version`` (``1``). Any further fields are
    free (e.g. camera poses) and are kept as they are.

``KEY.NNN.jpg``:
    The RGB frame, 8-bit baseline JPEG (quality 95 by default), H x W.

``KEY.NNN.depth.npz``:
    ``numpy.savez_compressed`` archive holding exactly one array named ``depth``: dtype
    ``float16``, shape ``(H, W)`` equal to the JPEG's size, values in **metres**. Sky (infinitely
    far) is ``+inf``; invalid or unknown pixels are ``NaN``; every other value is a finite depth
    > 0 m and <= 65504 m (the float16 maximum). float16 keeps about 3.3 significant digits
    (relative step 2**-11, i.e. <= 0.05 %). The depth is the one the source dataset provides
    (z-depth for most datasets; each converter states its definition).

:func:`decode_clip` is the one decoder used everywhere (never WebDataset's built-in image
decoders, which truncate 16-bit PNG), of whole clips or of a training window's frames; it checks
every field and raises :class:`ShardFormatError` naming shard, key and stored field.
:func:`read_meta` is the one json metadata parser. Writing (checking a :class:`Clip` against the
format first) is :mod:`datamodules.shard_writer`'s.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

FORMAT_VERSION = 1
FLOAT16_MAX_M = float(np.finfo(np.float16).max)  # 65504 m
MAX_FRAMES_PER_CLIP = 1000  # frame indices within a clip have 3 digits
KEY_PATTERN = re.compile(r"^[a-z0-9_-]+$")  # the key rules above
_REQUIRED_META = ("dataset", "scene", "frame_ids", "stride", "intrinsics", "depth_units")
_FRAME_FIELD = re.compile(r"^\d{3}\.")


class ShardFormatError(ValueError):
    """A clip or a shard sample that does not follow the clip shard format.

    Attributes:
        shard: Shard file or URL the sample came from (``None`` when writing).
        key: Sample key.
        field: Offending field, e.g. ``"003.depth.npz"`` or ``"json"``.
    """

    def __init__(
        self,
        problem: str,
        shard: str | None = None,
        key: str | None = None,
        field: str | None = None,
    ) -> None:
        self.shard = shard
        self.key = key
        self.field = field
        self.problem = problem
        where = [f"shard {shard}"] if shard else []
        where += [f"key {key!r}"] if key is not None else []
        where += [f"field {field!r}"] if field is not None else []
        super().__init__(f"{', '.join(where)}: {problem}" if where else problem)


@dataclass
class Clip:
    """One video clip with per-frame depth, as stored in one shard sample.

    Attributes:
        key: Sample key (see :func:`make_key`).
        meta: The json metadata (see the module docstring; :func:`make_meta` builds it).
        frames: (T, H, W, 3) uint8 RGB frames.
        depth: (T, H, W) float32 depth in metres; +inf = sky, NaN = invalid.
    """

    key: str
    meta: dict
    frames: np.ndarray
    depth: np.ndarray


def make_key(dataset: str, scene: str, start_frame: int) -> str:
    """Build a sample key ``{dataset}_{scene}_{start_frame:06d}`` that follows the key rules.

    Runs of characters other than ``[a-z0-9_-]`` (after lowercasing) become one ``_``.

    Raises:
        ValueError: If ``start_frame`` is negative or dataset/scene have no usable character.
    """
    if start_frame < 0:
        raise ValueError(f"start_frame must be >= 0, got {start_frame} (scene {scene!r})")
    parts = [re.sub(r"[^a-z0-9_-]+", "_", name.lower()).strip("_") for name in (dataset, scene)]
    if not all(parts):
        raise ValueError(f"cannot build a key from dataset {dataset!r} and scene {scene!r}")
    return f"{parts[0]}_{parts[1]}_{start_frame:06d}"


def make_meta(
    dataset: str,
    scene: str,
    frame_ids: list[int],
    stride: int = 1,
    intrinsics: list[float] | None = None,
    **extra: Any,
) -> dict:
    """Build the json metadata of a clip; ``extra`` adds free fields."""
    return {
        "dataset": dataset,
        "scene": scene,
        "frame_ids": [int(i) for i in frame_ids],
        "stride": int(stride),
        "intrinsics": None if intrinsics is None else [float(v) for v in intrinsics],
        "depth_units": "m",
        "format_version": FORMAT_VERSION,
        **extra,
    }


def check_meta(meta: Any, key: str, shard: str | None = None) -> None:
    """Check the json metadata of a clip against the format.

    Raises:
        ShardFormatError: Naming the field that is missing or wrong.
    """

    def fail(problem: str) -> ShardFormatError:
        return ShardFormatError(problem, shard, key, "json")

    if not isinstance(meta, dict):
        raise fail(f"metadata must be a JSON object, got {type(meta).__name__}")
    missing = [name for name in _REQUIRED_META if name not in meta]
    if missing:
        raise fail(f"metadata lacks {missing}; build it with datamodules.format.make_meta")
    for name in ("dataset", "scene"):
        if not isinstance(meta[name], str) or not meta[name]:
            raise fail(f"{name!r} must be a non-empty string, got {meta[name]!r}")
    ids = meta["frame_ids"]
    if not isinstance(ids, list) or not ids or not all(_is_int(i) for i in ids):
        raise fail(f"'frame_ids' must be a non-empty list of ints, got {ids!r}")
    if len(ids) > MAX_FRAMES_PER_CLIP:
        raise fail(f"{len(ids)} frames; a clip holds at most {MAX_FRAMES_PER_CLIP}")
    if not _is_int(meta["stride"]) or meta["stride"] < 1:
        raise fail(f"'stride' must be an int >= 1, got {meta['stride']!r}")
    intrinsics = meta["intrinsics"]
    if intrinsics is not None and not (
        isinstance(intrinsics, list) and len(intrinsics) == 4 and all(map(_is_number, intrinsics))
    ):
        raise fail(f"'intrinsics' must be [fx, fy, cx, cy] in pixels or null, got {intrinsics!r}")
    if meta["depth_units"] != "m":
        raise fail(f"'depth_units' must be 'm' (metres), got {meta['depth_units']!r}")
    version = meta.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise fail(
            f"format_version {version!r} is not supported (this reader knows {FORMAT_VERSION}); "
            "update flashdepth or re-create the shards"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, float) or _is_int(value)


def frame_field(index: int, kind: str) -> str:
    """Sample field of frame ``index``: ``kind`` is ``"jpg"`` or ``"depth.npz"``."""
    return f"{index:03d}.{kind}"


def encode_depth(depth_m: np.ndarray) -> bytes:
    """Encode one (H, W) depth map in metres as the bytes of a ``.depth.npz`` field."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, depth=np.asarray(depth_m).astype(np.float16))
    return buffer.getvalue()


def decode_depth(data: bytes) -> np.ndarray:
    """Decode the bytes of a ``.depth.npz`` field into (H, W) float32 metres.

    Raises:
        ValueError: If the bytes are not an npz with one 2-D float16 array named ``depth``, or
            it holds a depth <= 0 m or -inf.
    """
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a bare .npy array; write np.savez_compressed(file, depth=...)")
        with loaded:
            arrays = {name: loaded[name] for name in loaded.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"not a readable npz archive ({error})") from error
    if list(arrays) != ["depth"]:
        raise ValueError(f"npz must hold exactly one array named 'depth', found {list(arrays)}")
    depth = arrays["depth"]
    if depth.dtype != np.float16:
        raise ValueError(f"depth must be float16, got {depth.dtype}")
    if depth.ndim != 2:
        raise ValueError(f"depth must be 2-D (H, W), got shape {depth.shape}")
    depth = depth.astype(np.float32)  # reducing in float32 is ~10x faster than in float16
    nearest = float(np.fmin.reduce(depth, axis=None))  # ignores NaN
    if nearest <= 0:
        raise ValueError(f"depth {nearest} m; depths are > 0 m (NaN invalid, +inf sky)")
    return depth


def read_meta(sample: dict, shard: str | None = None) -> dict:
    """Parse and check the json metadata of a raw sample: the one metadata parser.

    Args:
        sample: Raw sample with ``"__key__"`` and ``"json"`` (bytes).
        shard: Shard name for error messages; defaults to ``sample["__url__"]``.

    Raises:
        ShardFormatError: If the json is missing, not UTF-8 JSON or breaks the format.
    """
    shard = shard or sample.get("__url__")
    key = sample.get("__key__")
    if "json" not in sample:
        raise ShardFormatError("missing; every sample needs KEY.json metadata", shard, key, "json")
    try:
        meta = json.loads(sample["json"])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ShardFormatError(f"not valid UTF-8 JSON ({error})", shard, key, "json") from error
    check_meta(meta, key, shard)
    return meta


def check_frame_fields(sample: dict, meta: dict, shard: str | None = None) -> None:
    """Check that a raw sample holds a .jpg and a .depth.npz for every frame in ``frame_ids``.

    Raises:
        ShardFormatError: Naming the first missing field, or a frame field beyond ``frame_ids``.
    """
    shard = shard or sample.get("__url__")
    key = sample.get("__key__")
    count = len(meta["frame_ids"])
    expected = [frame_field(t, kind) for t in range(count) for kind in ("jpg", "depth.npz")]
    unexpected = sorted(set(filter(_FRAME_FIELD.match, sample)) - set(expected))
    if unexpected:
        raise ShardFormatError(
            f"unexpected frame field: frame_ids lists {count} frames", shard, key, unexpected[0]
        )
    missing = [name for name in expected if name not in sample]
    if missing:
        raise ShardFormatError(
            f"missing ({len(missing)} field(s) absent; frame_ids lists {count} frames, each "
            "needs a .jpg and a .depth.npz)",
            shard,
            key,
            missing[0],
        )


def decode_clip(sample: dict, shard: str | None = None, frames: range | None = None) -> Clip:
    """Decode a raw WebDataset sample (bytes values), or some of its frames, into a :class:`Clip`.

    Args:
        sample: Raw sample with ``"__key__"``, ``"json"`` and the frame fields; ``"__url__"``
            names the shard when WebDataset provides it.
        shard: Shard name for error messages; defaults to ``sample["__url__"]``.
        frames: Stored frame indices to decode, e.g. ``range(2, 11, 2)`` for a training window
            (default: all). Only those frames are decoded; the clip's ``frame_ids`` are theirs
            and its ``stride`` is the stored stride times ``frames.step``.

    Raises:
        ShardFormatError: Naming shard, key and (stored) field when anything is missing or
            malformed.
        ValueError: If ``frames`` is empty or reaches outside the stored clip.
    """
    shard = shard or sample.get("__url__")
    key = sample.get("__key__")
    meta = read_meta(sample, shard)
    check_frame_fields(sample, meta, shard)
    count = len(meta["frame_ids"])
    frames = range(count) if frames is None else frames
    if not frames or frames.step < 1 or frames[0] < 0 or frames[-1] >= count:
        raise ValueError(f"frames {frames} is not a range within the {count} frames of {key!r}")
    rgbs, depths = [], []
    for t in frames:
        rgb = _decode_jpeg(sample[frame_field(t, "jpg")], shard, key, t)
        field = frame_field(t, "depth.npz")
        try:
            depth = decode_depth(sample[field])
        except ValueError as error:
            raise ShardFormatError(str(error), shard, key, field) from error
        if depth.shape != rgb.shape[:2]:
            raise ShardFormatError(
                f"depth shape {depth.shape} differs from its JPEG (H, W) {rgb.shape[:2]}",
                shard,
                key,
                field,
            )
        rgbs.append(rgb)
        depths.append(depth)
    if any(f.shape != rgbs[0].shape for f in rgbs):
        sizes = sorted({f.shape[:2] for f in rgbs})
        raise ShardFormatError(f"frames differ in size {sizes}", shard, key, "jpg")
    if frames != range(count):
        ids = [meta["frame_ids"][t] for t in frames]
        meta = dict(meta, frame_ids=ids, stride=meta["stride"] * frames.step)
    return Clip(key=key, meta=meta, frames=np.stack(rgbs), depth=np.stack(depths))


def _decode_jpeg(data: bytes, shard: str | None, key: str | None, index: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as error:
        raise ShardFormatError(
            f"not a readable image ({error})", shard, key, frame_field(index, "jpg")
        ) from error
