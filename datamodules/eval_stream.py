"""Evaluation streams: every stored clip exactly once, with equal batch counts on all ranks."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import IterableDataset

from datamodules.format import ShardFormatError, decode_clip
from datamodules.samples import depth_targets, describe_problem, make_sample
from datamodules.shards import SkipCounter, read_shard, worker_position
from flashdepth.transforms import resize_shape

#: Image side of the blank sample a worker pads with when none of its clips was readable.
_BLANK_SIDE = 14


def plan_eval(
    shards: list[str], counts: list[int], world_size: int, num_workers: int, batch_size: int
) -> list[list[tuple[list[str], int]]]:
    """Assign evaluation shards to ranks and workers and size every worker's padded stream.

    Rank ``r`` takes shards ``r, r + world_size, ...`` of the list; inside a rank, worker ``w``
    takes every ``num_workers``-th of those from ``w``. Worker ``w`` of every rank then yields
    the same number of samples: the largest clip count of any rank's worker ``w``, rounded up
    to whole batches. Every rank computes the same plan from the shard list alone.

    Args:
        shards: Shard files in order.
        counts: Clips in each shard (:func:`~datamodules.shards.count_clips`).
        world_size: Number of ranks.
        num_workers: DataLoader workers per rank (1 for loading in the main process).
        batch_size: Evaluation batch size.

    Returns:
        ``plan[rank][worker] = (shards, samples to yield including padding)``.

    Raises:
        ValueError: If there are fewer shards than ranks x workers.
    """
    slots = world_size * num_workers
    if len(shards) < slots:
        raise ValueError(
            f"{len(shards)} evaluation shard(s) for {world_size} rank(s) x {num_workers} "
            f"worker(s): every worker needs a shard, so at least {slots} shards are needed; "
            "lower num_workers or write the evaluation set into more, smaller shards"
        )
    indices = list(range(len(shards)))
    # assigned[rank][worker] = indices of that worker's shards
    assigned = [
        [indices[rank::world_size][worker::num_workers] for worker in range(num_workers)]
        for rank in range(world_size)
    ]
    batches = [
        max(
            math.ceil(sum(counts[i] for i in per_rank[worker]) / batch_size)
            for per_rank in assigned
        )
        for worker in range(num_workers)
    ]
    return [
        [([shards[i] for i in per_rank[w]], batches[w] * batch_size) for w in range(num_workers)]
        for per_rank in assigned
    ]


class EvalClips(IterableDataset):
    """Whole stored clips for validation/test/predict: each exactly once, in stream order.

    Worker ``w`` of this rank reads ``plan[w]`` (see :func:`plan_eval`) and, after its last
    clip, repeats that clip with ``is_padding=True`` until it has yielded its planned number of
    samples, so all ranks yield the same number of batches and no collective can hang. (A
    worker that could read nothing pads with a blank 1-frame clip.) Images are resized to
    :func:`flashdepth.transforms.resize_shape` (bicubic, like inference); depth keeps its
    native resolution.

    Args:
        plan: ``(shards, samples)`` for each worker of this rank.
        short_side: Target short side of the image (``None``: native size rounded up to 14 px).
        long_side_max: Optional cap on the image's long side.
    """

    def __init__(
        self, plan: list[tuple[list[str], int]], short_side: int | None, long_side_max: int | None
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
        shards, target = self.plan[worker]
        counter = SkipCounter()
        yielded, last = 0, None
        for shard in shards:
            for raw in read_shard(shard, counter):
                if yielded == target:
                    return
                try:
                    clip = decode_clip(raw)
                except ShardFormatError as error:
                    counter.skip(shard, raw["__key__"], describe_problem(error))
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
        """Resize the frames for the model; depth targets stay at native resolution."""
        image = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (T, H, W, 3) -> (T, 3, H, W)
        size = resize_shape(
            *image.shape[-2:], target=self.short_side, long_side_max=self.long_side_max
        )
        if size != tuple(image.shape[-2:]):
            image = F.interpolate(image, size=size, mode="bicubic", align_corners=False)
        image = image.div_(255.0).clamp_(0.0, 1.0)
        inverse_depth, valid = depth_targets(torch.from_numpy(depth_m))
        return make_sample(key, meta, image, inverse_depth, valid, skipped)

    def _blank(self) -> dict:
        """A 1-frame black clip without valid depth, used only as padding."""
        meta = {"dataset": "padding", "scene": "padding", "frame_ids": [0]}
        frames = np.zeros((1, _BLANK_SIDE, _BLANK_SIDE, 3), np.uint8)
        depth = np.full((1, _BLANK_SIDE, _BLANK_SIDE), np.nan, np.float32)
        return self._sample("padding", meta, frames, depth, 0)
