"""``TrainWindows``: the endless, resampled, mixed, shuffled and augmented training stream."""

from __future__ import annotations

import random
from collections.abc import Iterator
from itertools import islice
from typing import NamedTuple

import torch
import webdataset
from torch.utils.data import IterableDataset

from datamodules.augment import ClipAugment
from datamodules.format import ShardFormatError, check_frame_fields, decode_clip, read_meta
from datamodules.samples import describe_problem, make_sample
from datamodules.shards import SkipCounter, read_shard, worker_position

#: Shard draws in a row without one usable window before a training set is declared unusable.
_MAX_FRUITLESS_DRAWS = 64
#: Windows in a row that fail to decode before training gives up instead of spinning forever.
_MAX_FAILED_WINDOWS = 1000


class Window(NamedTuple):
    """A training window before decoding: a raw stored clip and the stored frames it takes."""

    sample: dict
    frames: range


class TrainWindows(IterableDataset):
    """Endless training windows, ``batches_per_rank * batch_size`` of them per epoch and rank.

    Per DataLoader worker: each set draws shards with replacement
    (:class:`webdataset.ResampledShards`) from a generator seeded by (seed, set, rank, worker,
    epoch), so ranks and workers read different streams; each stored clip is cut into
    ``count // span`` non-overlapping windows of ``clip_length`` frames at a stride drawn per
    clip from that set's strides (span = ``(clip_length - 1) * stride + 1``, random offset);
    sets are mixed by weight; the still-encoded windows pass a shuffle buffer; then they are
    decoded and augmented (:class:`~datamodules.augment.ClipAugment`: geometry on uint8 frames
    and float16 depth; the colour parameters are drawn and travel in ``colour``, applied on the
    accelerator). The rank's batches are split over its workers, each worker yielding whole
    batches, so the DataLoader gives exactly ``batches_per_rank`` batches per epoch
    (webdataset's ``with_epoch``, made exact for several workers).

    Args:
        sets: Shard files of each training set.
        weights: Mixing weight of each set.
        strides: Strides to draw from, per set.
        clip_length: Frames per window.
        augment: Crop/flip/colour transform giving the training size.
        shuffle_buffer: Windows held by the shuffle buffer (still encoded: a fraction of their
            decoded size).
        batches_per_rank: Batches per epoch on this rank.
        batch_size: Samples per batch.
        rank: This process's rank (taken in the main process, where it is known).
        seed: Base seed.
    """

    def __init__(
        self,
        sets: list[list[str]],
        weights: list[float],
        strides: list[list[int]],
        clip_length: int,
        augment: ClipAugment,
        shuffle_buffer: int,
        batches_per_rank: int,
        batch_size: int,
        rank: int,
        seed: int,
    ) -> None:
        super().__init__()
        self.sets, self.weights, self.strides = sets, weights, strides
        self.clip_length, self.augment = clip_length, augment
        self.shuffle_buffer = shuffle_buffer
        self.batches_per_rank, self.batch_size = batches_per_rank, batch_size
        self.rank, self.seed = rank, seed
        self.epoch = 0  # set by the DataLoader in the main process (fresh workers see it)
        # Iterations at the same epoch value: persistent workers never see the main process's
        # epoch change, so this keeps their epochs apart; elsewhere it stays 1 and the stream is
        # a function of the epoch alone (a resumed run draws an uninterrupted run's stream).
        self._iterations = 0
        self._iterations_epoch = 0

    def __len__(self) -> int:
        return self.batches_per_rank * self.batch_size

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = worker_position()
        if self.epoch != self._iterations_epoch:
            self._iterations, self._iterations_epoch = 0, self.epoch
        self._iterations += 1
        stream_seed = webdataset.utils.make_seed(
            self.seed, self.rank, worker, self.epoch, self._iterations
        )
        rng = random.Random(stream_seed)
        generator = torch.Generator().manual_seed(stream_seed)
        counter = SkipCounter()
        sources = [
            self._set_windows(index, rng.getrandbits(31), counter)
            for index in range(len(self.sets))
        ]
        shuffle = webdataset.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng)
        windows = shuffle(_mix(sources, self.weights, rng))
        samples = (self._decode(window, counter, generator) for window in windows)
        batches = self.batches_per_rank // num_workers
        batches += worker < self.batches_per_rank % num_workers
        return islice(_usable(samples), batches * self.batch_size)

    def _set_windows(self, index: int, seed: int, counter: SkipCounter) -> Iterator[Window]:
        """Encoded windows of one set, endlessly, from resampled shards."""
        rng = random.Random(seed)
        shards = webdataset.ResampledShards(
            self.sets[index], seed=seed, worker_seed=lambda: 0, deterministic=True
        )
        fruitless = 0
        for draw in shards:
            windows = 0
            for raw in read_shard(draw["url"], counter.skip):
                try:
                    cut = self._cut(raw, self.strides[index], rng)
                except ShardFormatError as error:
                    counter.skip(raw["__url__"], raw["__key__"], describe_problem(error))
                    continue
                windows += len(cut)
                yield from cut
            fruitless = 0 if windows else fruitless + 1
            if fruitless >= _MAX_FRUITLESS_DRAWS:
                raise RuntimeError(
                    f"training set {index} gave no usable window in {fruitless} shard draws "
                    f"(e.g. {draw['url']}): its shards are corrupt or empty, or its clips are "
                    f"shorter than clip_length={self.clip_length} at strides {self.strides[index]}"
                )

    def _cut(self, raw: dict, strides: list[int], rng: random.Random) -> list[Window]:
        """Cut windows (stored frame ranges, still encoded) out of one stored clip."""
        meta = read_meta(raw)
        check_frame_fields(raw, meta)
        count = len(meta["frame_ids"])
        fitting = [s for s in strides if (self.clip_length - 1) * s + 1 <= count]
        if not fitting:
            raise ShardFormatError(
                f"{count} frames cannot hold a window of clip_length={self.clip_length} at "
                f"strides {strides}; lower clip_length or store longer clips",
                raw["__url__"],
                raw["__key__"],
                "json",
            )
        stride = rng.choice(fitting)
        span = (self.clip_length - 1) * stride + 1
        windows = count // span
        offset = rng.randint(0, count - windows * span)
        starts = range(offset, offset + windows * span, span)
        return [Window(raw, range(start, start + span, stride)) for start in starts]

    def _decode(
        self, window: Window, counter: SkipCounter, generator: torch.Generator
    ) -> dict | None:
        """Decode and augment one window; ``None`` (counted) when a field is corrupt.

        The window holds a uint8 image and float16 depth in metres, with colour drawn but not
        applied (see :func:`~datamodules.samples.finish_batch`).
        """
        sample = window.sample
        try:
            clip = decode_clip(sample, frames=window.frames)
        except ShardFormatError as error:
            counter.skip(sample["__url__"], sample["__key__"], describe_problem(error))
            return None
        # (T, H, W, 3) -> (T, 3, H, W) uint8, channels-last in memory
        image = torch.from_numpy(clip.frames).permute(0, 3, 1, 2)
        depth_m = torch.from_numpy(clip.depth).half()  # shard depth is float16: exact
        augmented = self.augment(image, depth_m, generator=generator)
        (depth_m,) = augmented.maps
        return make_sample(
            clip.key, clip.meta, augmented.image, depth_m, counter.take(), augmented.colour
        )


def _usable(samples: Iterator[dict | None]) -> Iterator[dict]:
    """Drop failed samples (``None``); stop with an error when nothing decodes any more."""
    failures = 0
    for sample in samples:
        if sample is not None:
            failures = 0
            yield sample
            continue
        failures += 1
        if failures >= _MAX_FAILED_WINDOWS:
            raise RuntimeError(
                f"{failures} training windows in a row failed to decode (see the "
                "BadSampleWarning messages): the training shards are corrupt; check them with "
                "`flashdepth data inspect`"
            )


def _mix(
    sources: list[Iterator[Window]], weights: list[float], rng: random.Random
) -> Iterator[Window]:
    """Endlessly take the next item of a source drawn by weight."""
    indices = range(len(sources))
    while True:
        yield next(sources[rng.choices(indices, weights)[0]])
