"""What flows through the inference pipeline: frames in, depth out, and the video they belong to.

A **source** (:class:`FrameSource`) yields :class:`Frame` objects of one video (a file, an
image sequence, a camera or a stream URL) and describes it with a :class:`VideoInfo`. A
**sink** (:class:`DepthSink`) receives each frame's depth and writes it (EXR, 16-bit PNG,
npy/npz, mp4). The :class:`~flashdepth.inference.predictor.StreamingPredictor` sits between
them. Nothing here needs Lightning.

Depth handed to sinks is ``float32 (H, W)`` **relative inverse depth on the ×100 scale**
(≈ 100 / metres for models trained with our recipes and the released FlashDepth weights;
affine-invariant for Depth Anything V2's own weights), at the frame's resolution unless the
user asked for the network's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class VideoInfo:
    """One input video as a source sees it.

    Attributes:
        name: Stem used for its outputs (``clip.mp4`` -> ``clip``; a folder -> its name).
        source: The path or URL it was opened from.
        width: Frame width in pixels.
        height: Frame height in pixels.
        fps: Exact frame rate (``Fraction(30000, 1001)`` for 29.97), ``None`` if unknown
            (image sequences without a rate; the user may give one).
        num_frames: Frame count announced by the container or the sequence, ``None`` for
            live input or when the container does not say.
        has_audio: Whether the input has an audio track that mp4 outputs should copy.
        live: A camera or network stream (no end, no resume).
        extra: Free metadata recorded in ``units.json`` (codec, pixel format, ...).
    """

    name: str
    source: str
    width: int
    height: int
    fps: Fraction | None = None
    num_frames: int | None = None
    has_audio: bool = False
    live: bool = False
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: Position in the video, 0-based (frame number for image sequences: the
            number parsed from the file name).
        rgb: ``(H, W, 3)`` RGB: ``uint8`` (video, JPEG, PNG), ``uint16`` (16-bit PNG) or
            ``float32`` (EXR, linear or display values as stored).
        time: Presentation time in seconds, if known.
    """

    index: int
    rgb: np.ndarray
    time: float | None = None


@runtime_checkable
class FrameSource(Protocol):
    """Frames of one video, decoded lazily (never the whole video in memory)."""

    info: VideoInfo

    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames in order."""
        ...

    def close(self) -> None:
        """Release the file, camera or connection."""
        ...


@runtime_checkable
class DepthSink(Protocol):
    """Writes the depth of one video; several sinks can receive the same stream.

    ``open`` is called once before the first frame, ``write`` once per frame in order, then
    ``close`` (the outputs are complete: temporary names are renamed to their final names)
    or ``abort`` (a failure or interrupt: frames written so far stay valid under temporary
    names, nothing incomplete appears under a final name).
    """

    def open(self, info: VideoInfo, out_dir: Path) -> None:
        """Prepare the outputs of ``info`` under ``out_dir``."""
        ...

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        """Write ``depth`` (float32 (H, W), ×100 relative inverse depth) of ``frame``."""
        ...

    def close(self) -> None:
        """Finish the video: flush, then rename temporary outputs to their final names."""
        ...

    def abort(self) -> None:
        """Stop without finalising."""
        ...
