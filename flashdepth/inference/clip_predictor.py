"""Clips of many videos, a batch at a time, through the one streaming predictor of the zoo.

``flashdepth predict`` reads shard sets in batches of clips: row ``b`` of a batch is ``T``
consecutive frames of some video, and a video's next clip may come in the same batch, in the
next one, or (with several DataLoader workers, whose batches alternate) a few batches later.
:class:`ClipPredictor` gives every video its own
:class:`~flashdepth.inference.predictor.StreamingPredictor` (the class behind
``flashdepth stream``), so the temporal state is carried in one place for both commands.

**When a clip continues a video.** A clip of video ``key`` starting at frame ``s`` continues
the stream of ``key`` whose last clip ended just before ``s`` (it started at ``s - T'`` and
had ``T'`` frames) and whose frames had the same size; otherwise its stream starts fresh.
Clips stored at a stride > 1 advance their first frame id faster than their length, so they
start fresh: state is never carried across a gap. Open streams are kept for the
:data:`MAX_STREAMS` videos seen most recently (memory stays bounded on any number of videos).

Rows are streamed one after the other, each at batch size 1, so two consecutive clips of one
video in the same batch are chained too. Frames travel to the predictor as float32 numpy
``(h, w, 3)`` in [0, 1] (display-referred) and depth comes back on the CPU. Autocast is
taken from the caller: inside ``torch.autocast(dtype=torch.bfloat16)`` (Lightning's
``bf16-mixed``) the model runs in bf16, as it would in ``flashdepth stream --dtype bf16``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import torch
from torch import Tensor, nn

from flashdepth.inference.predictor import AUTOCAST_DTYPES, StreamingPredictor

#: Open video streams kept at most (least recently used closed first).
MAX_STREAMS = 64


def ambient_dtype(device: torch.device) -> str:
    """The ``dtype`` option of :class:`StreamingPredictor` matching the caller's autocast."""
    if not torch.is_autocast_enabled(device.type):
        return "fp32"
    autocast = torch.get_autocast_dtype(device.type)
    return next((name for name, dtype in AUTOCAST_DTYPES.items() if dtype == autocast), "fp32")


class ClipPredictor:
    """Depth of batches of clips, each video's temporal state carried from clip to clip.

    Args:
        model: Any model of the zoo (the model contract); shared by every stream.
        max_streams: Videos whose stream stays open at most.
    """

    def __init__(self, model: nn.Module, max_streams: int = MAX_STREAMS) -> None:
        if max_streams < 1:
            raise ValueError(f"max_streams must be at least 1, got {max_streams}")
        self.model = model
        self.max_streams = max_streams
        self._streams: OrderedDict[Hashable, tuple[int, StreamingPredictor]] = OrderedDict()

    def reset(self) -> None:
        """Close every stream: the next clip of any video starts fresh."""
        self._streams.clear()

    def _stream(self, video: Hashable, start: int, clips: Tensor) -> StreamingPredictor:
        """The stream that continues ``video`` at frame ``start``, or a fresh one."""
        size = (int(clips.shape[-2]), int(clips.shape[-1]))
        end, predictor = self._streams.pop(video, (None, None))
        if predictor is not None and end == start and predictor.input_size == size:
            return predictor
        return StreamingPredictor(
            self.model,
            resolution=None,
            device=str(clips.device),
            dtype=ambient_dtype(clips.device),
            output="input",
            float_input="display",
        )

    def __call__(
        self, clips: Tensor, videos: Sequence[Hashable | None], starts: Sequence[int]
    ) -> Tensor:
        """Stream every row of ``clips``, continuing the videos of earlier calls.

        Args:
            clips: ``(B, T, 3, h, w)`` RGB in [0, 1] at the network's size (sides multiples
                of 14; others are rounded up for the model and the depth resized back).
            videos: Per row, the video it belongs to (e.g. ``(dataset, scene)``); ``None``
                for a row to skip (padding): its depth is zeros and no stream is touched.
            starts: Per row, the index of its first frame in its video.

        Returns:
            ``(B, T, h, w)`` float32 relative inverse depth (×100 scale) on the CPU.
        """
        if len(videos) != clips.shape[0] or len(starts) != clips.shape[0]:
            raise ValueError(
                f"got {clips.shape[0]} clips but {len(videos)} video keys and {len(starts)} "
                "start frames; give one of each per clip"
            )
        batch, time = clips.shape[:2]
        depth = torch.zeros(batch, time, *clips.shape[-2:])
        frames = clips.detach().float().permute(0, 1, 3, 4, 2).cpu().numpy()  # -> (B, T, h, w, 3)
        for row, (video, start) in enumerate(zip(videos, starts, strict=True)):
            if video is None:
                continue
            predictor = self._stream(video, int(start), clips)
            for t in range(time):
                depth[row, t] = torch.from_numpy(predictor.predict(frames[row, t]))
            self._streams[video] = (int(start) + time, predictor)
            while len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
        return depth
