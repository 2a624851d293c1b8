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
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset

from datamodules.network_input import network_frames


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
        try:
            container = av.open(str(self.path))
        except av.error.FFmpegError as error:
            raise ValueError(
                f"cannot decode video {self.path}: {error}. Give a file FFmpeg can read "
                "(mp4/mov/mkv/avi...)."
            ) from error
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames: list[np.ndarray] = []
            start = 0
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) == self.chunk_frames:
                    yield self._batch(frames, start)
                    start += len(frames)
                    frames = []
            if frames:
                yield self._batch(frames, start)


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

    def setup(self, stage: str | None = None) -> None:
        """Check that the video exists before anything runs."""
        if not self.path.is_file():
            raise FileNotFoundError(f"video {self.path} does not exist; give --data.path FILE")

    def predict_dataloader(self) -> DataLoader:
        """Chunks in order, decoded in the main process (a video is one sequential stream)."""
        chunks = VideoChunks(self.path, self.short_side, self.chunk_frames)
        return DataLoader(chunks, batch_size=None, num_workers=0)
