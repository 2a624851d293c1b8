"""``VideoDataModule``: predict depth for a video file, decoded on the fly with PyAV.

The video is never loaded whole: frames are decoded, resized and handed out in
chunks of ``chunk_frames``, one chunk per batch, in order, so memory stays flat
for a video of any length. Batches follow the data contract's prediction form
(no depth): ``image`` (1, T, 3, H, W) RGB in [0, 1] resized so the short side is
``short_side`` (multiples of 14 px), ``key``/``dataset``/``scene`` (``"video"``
and the file's stem), ``start_frame`` (index of the chunk's first frame in the
video), ``is_padding`` (False), and ``output_size`` (1, 2) = the native
(height, width) the predictions are resized back to. Consecutive chunks have
consecutive ``start_frame``, so the task carries the temporal state across them.

A video that ends before the frame count its header states (a cut-short download, a
damaged file) gives the frames it has, then an :class:`IncompleteVideoWarning` naming the
file and both counts; :attr:`VideoDataModule.ended_early` keeps that message so that
``flashdepth predict`` exits with a non-zero status.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset

from datamodules.network_input import network_frames


class IncompleteVideoWarning(UserWarning):
    """A video ended before the frame count of its header (or failed to decode midway)."""


class VideoReadError(ValueError):
    """A file that FFmpeg cannot open as a video."""


def open_video(path: Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV, refusing a file that is not a video.

    Raises:
        VideoReadError: Naming the file, when FFmpeg cannot read it or it has no video stream.
    """
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise VideoReadError(
            f"cannot decode video {path}: {error}. Give a file FFmpeg can read "
            "(mp4/mov/mkv/avi...)."
        ) from error
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path} holds no video stream; give a video file")
    return container


def video_scene_name(path: Path) -> str:
    """A file name reduced to the shard key alphabet (lowercase ``[a-z0-9_-]``)."""
    return re.sub(r"[^a-z0-9_-]+", "_", path.stem.lower()).strip("_") or "video"


class VideoChunks(IterableDataset):
    """Decode a video file into batches of ``chunk_frames`` consecutive frames.

    Args:
        path: Video file readable by PyAV/FFmpeg.
        short_side: Short side of the network input (rounded up to 14 px multiples).
        chunk_frames: Frames per batch.
    """

    def __init__(self, path: Path, short_side: int, chunk_frames: int) -> None:
        self.path = path
        self.short_side = short_side
        self.chunk_frames = chunk_frames
        self.scene = video_scene_name(path)
        self.ended_early: str | None = None

    def _batch(self, frames: list[np.ndarray], start: int) -> dict:
        rgb = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
        height, width = rgb.shape[-2:]
        image = network_frames(rgb, self.short_side)
        return {
            "image": image[None],  # (T, 3, h, w) -> (1, T, 3, h, w)
            "key": [f"video_{self.scene}_{start:06d}"],
            "dataset": ["video"],
            "scene": [self.scene],
            "start_frame": torch.tensor([start]),
            "is_padding": torch.tensor([False]),
            "output_size": torch.tensor([[height, width]]),
        }

    def __iter__(self) -> Iterator[dict]:
        self.ended_early = None
        with open_video(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            expected = int(stream.frames or 0)  # 0: the header states no count
            frames: list[np.ndarray] = []
            start = 0
            failure = None
            try:
                for frame in container.decode(stream):
                    frames.append(frame.to_ndarray(format="rgb24"))
                    if len(frames) == self.chunk_frames:
                        yield self._batch(frames, start)
                        start += len(frames)
                        frames = []
            except av.error.FFmpegError as error:
                failure = error
            if frames:
                yield self._batch(frames, start)
                start += len(frames)
        self._check_complete(start, expected, failure)

    def _check_complete(
        self, decoded: int, expected: int, failure: av.error.FFmpegError | None
    ) -> None:
        """Warn (and remember) when the video ended early.

        That is when fewer frames were decoded than the header states, or decoding failed
        midway.
        """
        if failure is None and decoded >= expected:
            return
        of = f" of the {expected} frames its header states" if expected else ""
        why = f"decoding failed: {failure}" if failure else "truncated or damaged file"
        self.ended_early = (
            f"{self.path} ended after {decoded}{of} ({why}); depth covers those {decoded} "
            "frames only"
        )
        warnings.warn(self.ended_early, IncompleteVideoWarning, stacklevel=2)


class VideoDataModule(LightningDataModule):
    """Prediction batches from one video file (``flashdepth predict``).

    Args:
        path: The video file.
        short_side: Short side of the network input in pixels (518 as DAv2; rounded up
            to a multiple of 14).
        chunk_frames: Frames decoded and predicted per batch.
    """

    def __init__(self, path: str, short_side: int = 518, chunk_frames: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.path = Path(path)
        if short_side < 14:
            raise ValueError(f"short_side must be at least one patch (14 px), got {short_side}")
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.short_side = short_side
        self.chunk_frames = chunk_frames
        self._chunks: VideoChunks | None = None

    @property
    def ended_early(self) -> str | None:
        """Why the last prediction pass covered less than the whole video.

        ``None``: it covered every frame the header states, or the header states no count.
        """
        return self._chunks.ended_early if self._chunks is not None else None

    def setup(self, stage: str | None = None) -> None:
        """Check that the video exists and FFmpeg can open it, before anything runs."""
        if not self.path.is_file():
            raise FileNotFoundError(f"video {self.path} does not exist; give --data.path FILE")
        open_video(self.path).close()

    def predict_dataloader(self) -> DataLoader:
        """Chunks in order, decoded in the main process (a video is one sequential stream)."""
        self._chunks = VideoChunks(self.path, self.short_side, self.chunk_frames)
        return DataLoader(self._chunks, batch_size=None, num_workers=0)
