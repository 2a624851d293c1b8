"""Ground-truth videos from evaluation shards, read a range of frames at a time.

One shard sample is one video, as in ``flashdepth test``: convert evaluation datasets with
``--clip-length 0`` so that a scene is one sample (a scene longer than 1000 frames becomes
several samples, each a video of its own). Listing the videos reads only the tar headers
(:func:`~datamodules.shards.index_shard`) and each sample's json; depth frames are then read on
demand, a range at a time, by seeking straight to their ``.depth.npz`` files through the one
tar reader (:func:`~datamodules.shards.read_samples`), so a long video is never held in memory.
RGB frames are never read: scoring needs depth only.

Depth is decoded by :func:`datamodules.format.decode_depth` (metres, +inf sky, NaN invalid)
and turned into the metrics' targets by :func:`datamodules.samples.depth_targets` (inverse
depth in 1/m with sky = 0, and the valid mask), exactly as the evaluation DataModule does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from datamodules.format import (
    ShardFormatError,
    check_frame_fields,
    decode_depth,
    frame_field,
    read_meta,
)
from datamodules.samples import depth_targets
from datamodules.shards import SampleEntry, expand_shards, index_shard, read_samples
from flashdepth.evaluate import EvaluationError


@dataclass(frozen=True)
class GroundTruthVideo:
    """One evaluation video: one sample of a clip shard.

    Attributes:
        entry: Where the sample's files lie in its shard.
        dataset: Dataset name from the sample's json.
        scene: Scene name from the sample's json.
        frame_ids: Frame numbers of the source sequence, one per stored frame.
    """

    entry: SampleEntry
    dataset: str
    scene: str
    frame_ids: tuple[int, ...]

    @property
    def key(self) -> str:
        """The sample key, unique in the shard set."""
        return self.entry.key

    def describe(self) -> str:
        """``dataset/scene (key K)`` for messages."""
        return f"{self.dataset}/{self.scene} (key {self.key})"


def _raise_unreadable(shard: str, key: str, problem: str) -> None:
    raise EvaluationError(
        f"shard {shard}, sample {key!r}: {problem}; re-create the shard (e.g. rerun "
        "`flashdepth data convert`) or leave it out of --gt"
    )


def _read_fields(entry: SampleEntry, fields: list[str]) -> dict:
    """The raw bytes of some fields of one sample (plus ``__key__`` and ``__url__``)."""
    wanted = set(fields)
    subset = replace(entry, files=tuple(f for f in entry.files if f[0] in wanted))
    for sample in read_samples([subset], _raise_unreadable):
        return sample
    raise AssertionError("read_samples yields every intact entry")  # pragma: no cover


def list_videos(patterns: str | list[str]) -> list[GroundTruthVideo]:
    """Every sample of the shards as a video, in shard order.

    Args:
        patterns: Shard files, brace patterns, globs or folders (see
            :func:`~datamodules.shards.expand_shards`).

    Raises:
        EvaluationError: If nothing matches, a shard is damaged, a sample breaks the shard
            format, or two samples share a key.
    """
    try:
        shards = expand_shards(patterns)
    except FileNotFoundError as error:
        raise EvaluationError(str(error)) from error
    videos: list[GroundTruthVideo] = []
    seen: dict[str, str] = {}
    for shard in shards:
        for entry in index_shard(shard):
            if entry.damage is not None:
                _raise_unreadable(shard, entry.key, f"unreadable tar ({entry.damage})")
            names = {field: b"" for field, _, _ in entry.files}
            try:
                meta = read_meta(_read_fields(entry, ["json"]), shard)
                check_frame_fields({"__key__": entry.key, **names}, meta, shard)
            except ShardFormatError as error:
                raise EvaluationError(f"{error}; fix or re-create this shard") from error
            if entry.key in seen:
                raise EvaluationError(
                    f"sample key {entry.key!r} is in both {seen[entry.key]} and {shard}; give "
                    "each evaluation shard set once in --gt"
                )
            seen[entry.key] = shard
            videos.append(
                GroundTruthVideo(entry, meta["dataset"], meta["scene"], tuple(meta["frame_ids"]))
            )
    if not videos:
        raise EvaluationError(f"the shards of {patterns!r} hold no sample; nothing to evaluate")
    return videos


def read_targets(video: GroundTruthVideo, frames: range) -> tuple[Tensor, Tensor]:
    """Ground truth of some frames, as the metrics take it.

    Args:
        video: The video.
        frames: Stored frame indices (0-based positions in the sample), e.g. ``range(8, 16)``.

    Returns:
        ``(inverse_depth, valid)``: (C, H, W) float32 inverse depth in 1/m (sky 0, invalid
        0) and (C, H, W) bool (False where the depth is NaN).

    Raises:
        EvaluationError: Naming shard, key and field when a depth file is unreadable or its
            size differs from the video's first frame.
    """
    fields = [frame_field(t, "depth.npz") for t in frames]
    raw = _read_fields(video.entry, fields)
    depths: list[np.ndarray] = []
    for field in fields:
        try:
            depth = decode_depth(raw[field])
        except ValueError as error:
            problem = ShardFormatError(str(error), video.entry.shard, video.key, field)
            raise EvaluationError(f"{problem}; re-create this shard") from error
        if depths and depth.shape != depths[0].shape:
            raise EvaluationError(
                f"shard {video.entry.shard}, key {video.key!r}, field {field!r}: depth "
                f"{depth.shape} differs in size from {fields[0]} {depths[0].shape}; every "
                "frame of a video needs one size"
            )
        depths.append(depth)
    return depth_targets(torch.from_numpy(np.stack(depths)))


def frame_size(video: GroundTruthVideo) -> tuple[int, int]:
    """``(H, W)`` of the video's depth, from its first frame."""
    inverse_depth, _ = read_targets(video, range(1))
    return int(inverse_depth.shape[-2]), int(inverse_depth.shape[-1])
