"""Evaluation streams: every stored clip exactly once, with equal batch counts on all ranks.

Works on any number of shards, ranks and DataLoader workers (one shard read by 2 ranks x 2
workers included): clips, not shards, are split between the readers. Every rank indexes every
shard from its tar headers (:func:`~datamodules.shards.index_shard`, no pixels read), lists the
clips in shard order, and gives reader ``i = rank * num_workers + worker`` of the ``R = world
size x workers`` readers the ``i``-th of ``R`` contiguous, equal (to within one clip) runs of
that list. A reader seeks straight to its clips (:func:`~datamodules.shards.read_samples`), so
it reads only their bytes, mostly from one shard in file order; no clip is read twice and no
reader idles while another reads a whole shard. Readers with fewer clips than the largest pad
with ``is_padding=True`` copies, so every rank yields the same number of batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset

from datamodules.format import ShardFormatError, decode_clip
from datamodules.network_input import network_frames
from datamodules.samples import describe_problem, make_sample
from datamodules.shards import SampleEntry, SkipCounter, read_samples, worker_position

#: Image side of the blank sample a reader pads with when it has no readable clip.
_BLANK_SIDE = 14

#: ``plan[rank][worker] = (entries to read, samples to yield including padding)``.
EvalPlan = list[list[tuple[list[SampleEntry], int]]]


def plan_eval(
    entries: list[SampleEntry], world_size: int, num_workers: int, batch_size: int
) -> EvalPlan:
    """Split the clips between ranks and workers and size every worker's padded stream.

    Reader ``rank * num_workers + worker`` takes the clips ``[n * i // R, n * (i + 1) // R)``
    of the ``n`` entries (``R`` readers), so readers differ by at most one clip. Worker ``w`` of
    every rank then yields the same number of samples: the largest clip count of any rank's
    worker ``w``, rounded up to whole batches. Every rank computes the same plan.

    Args:
        entries: The evaluation samples in shard order (damaged ones included: the reader that
            gets one reports it and pads).
        world_size: Number of ranks.
        num_workers: DataLoader workers per rank (1 for loading in the main process).
        batch_size: Evaluation batch size.

    Returns:
        ``plan[rank][worker] = (entries, samples to yield including padding)``.
    """
    readers = world_size * num_workers
    bounds = [len(entries) * reader // readers for reader in range(readers + 1)]
    runs = [entries[bounds[reader] : bounds[reader + 1]] for reader in range(readers)]
    per_rank = [runs[rank * num_workers : (rank + 1) * num_workers] for rank in range(world_size)]
    batches = [
        max(math.ceil(len(rank_runs[worker]) / batch_size) for rank_runs in per_rank)
        for worker in range(num_workers)
    ]
    return [
        [(rank_runs[worker], batches[worker] * batch_size) for worker in range(num_workers)]
        for rank_runs in per_rank
    ]


class EvalClips(IterableDataset):
    """Whole stored clips for validation/test/predict: each exactly once, in stream order.

    Worker ``w`` of this rank reads ``plan[w]`` (see :func:`plan_eval`) and, after its last
    clip, repeats that clip with ``is_padding=True`` until it has yielded its planned number of
    samples, so all ranks yield the same number of batches and no collective can hang. (A
    worker without a readable clip pads with a blank 1-frame clip.) Images are resized by
    :func:`~datamodules.network_input.network_frames` (bicubic, like inference) and rounded
    back to uint8 for the transfer (within half a level, 0.5/255, of the float resize); depth
    keeps its native resolution, in float16 metres as stored. Samples carry the identity
    colour; :func:`~datamodules.samples.finish_batch` finishes the batches on the device.

    Args:
        plan: ``(entries, samples)`` for each worker of this rank.
        short_side: Target short side of the image (``None``: native size rounded up to 14 px).
        long_side_max: Optional cap on the image's long side.
    """

    def __init__(
        self,
        plan: list[tuple[list[SampleEntry], int]],
        short_side: int | None,
        long_side_max: int | None,
    ) -> None:
        super().__init__()
        self.plan, self.short_side, self.long_side_max = plan, short_side, long_side_max

    def __len__(self) -> int:
        return sum(samples for _, samples in self.plan)

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = worker_position()
        if num_workers != len(self.plan):
            raise RuntimeError(
                f"evaluation was planned for {len(self.plan)} worker(s) but runs with "
                f"{num_workers}; build the DataLoader with the DataModule's num_workers"
            )
        entries, target = self.plan[worker]
        counter = SkipCounter()
        yielded, last = 0, None
        for raw in read_samples(entries, counter.skip):
            try:
                clip = decode_clip(raw)
            except ShardFormatError as error:
                counter.skip(raw["__url__"], raw["__key__"], describe_problem(error))
                continue
            last = self._sample(clip.key, clip.meta, clip.frames, clip.depth, counter.take())
            yielded += 1
            yield last
        padding = dict(last or self._blank(), is_padding=True)
        for _ in range(target - yielded):
            yield dict(padding, skipped=counter.take())

    def _sample(
        self, key: str, meta: dict, frames: np.ndarray, depth_m: np.ndarray, skipped: int
    ) -> dict:
        """Resize the frames for the model, back to uint8 (channels-last) for the transfer.

        Depth stays at native resolution, in metres.
        """
        rgb = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
        image01 = network_frames(rgb, self.short_side, self.long_side_max)
        image = image01.mul_(255.0).round_().to(torch.uint8, memory_format=torch.channels_last)
        return make_sample(key, meta, image, torch.from_numpy(depth_m), skipped)

    def _blank(self) -> dict:
        """A 1-frame black clip without valid depth, used only as padding."""
        meta = {"dataset": "padding", "scene": "padding", "frame_ids": [0]}
        frames = np.zeros((1, _BLANK_SIDE, _BLANK_SIDE, 3), np.uint8)
        depth = np.full((1, _BLANK_SIDE, _BLANK_SIDE), np.nan, np.float32)
        return self._sample("padding", meta, frames, depth, 0)
