"""``ClipDataModule``: clip shards to training windows and evaluation videos, DDP-safe."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from datamodules.augment import ClipAugment
from datamodules.eval_stream import EvalClips, plan_eval
from datamodules.samples import collate_clips, finish_batch
from datamodules.shards import SampleEntry, distributed_position, expand_shards, index_shard
from datamodules.train_stream import TrainWindows

_EVAL_STAGES = {"val": ("fit", "validate"), "test": ("test",), "predict": ("predict",)}


class _EpochDataLoader(DataLoader):
    """A DataLoader that tells its training stream which epoch starts, so epochs differ.

    Under a Trainer the epoch is the trainer's, so a run resumed with ``--ckpt_path`` draws
    the stream of the epoch it resumes in instead of replaying the first epoch's.
    """

    def __init__(self, *args: Any, trainer_epoch: Callable[[], int | None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trainer_epoch = trainer_epoch

    def __iter__(self) -> Iterator:
        epoch = self.trainer_epoch()
        self.dataset.epoch = self.dataset.epoch + 1 if epoch is None else epoch + 1
        return super().__iter__()


class ClipDataModule(LightningDataModule):
    """Stream clip shards for training, validation, test and prediction, on one or many GPUs.

    Shard arguments take a brace pattern (``"data/spring-train-{000000..000041}.tar"``), a glob,
    a folder (all ``*.tar`` inside) or a list of them. For training, each list entry is one
    training set; sets are mixed by ``train_weights``. For evaluation, list entries are joined.

    Training (per rank): shards are drawn with replacement (webdataset ``ResampledShards``)
    from a stream seeded by ``(seed, rank, DataLoader worker, epoch)``, so ranks and workers
    read different data without coordinating; each stored clip gives non-overlapping windows of
    ``clip_length`` frames at a stride drawn per clip from ``train_strides``; windows pass a
    shuffle buffer of ``shuffle_buffer`` (still encoded), are decoded and augmented
    (:class:`~datamodules.augment.ClipAugment`: resize-to-cover, crop to ``image_size``, flip,
    colour jitter drawn per clip; crop only when ``augment=False``). Every rank gets exactly
    ``epoch_length`` batches per epoch.

    Evaluation (validation, test, predict): every stored clip exactly once, whole (all its
    frames, the video evaluated in stream order), the image resized so its short side is
    ``eval_short_side`` (multiples of 14 px, :func:`datamodules.network_input.resize_shape`),
    depth at native resolution, on any number of shards, ranks and workers. Scheme
    (:mod:`datamodules.eval_stream`): every rank indexes every shard from its tar headers (no
    pixels decoded, cached), lists the clips in shard order (the shard list sorted as given)
    and gives each of the ``W * max(1, num_workers)`` readers (``W`` = world size) one
    contiguous run of that list, equal to within one clip; a reader seeks straight to its
    clips. A worker with fewer clips than the largest repeats its last clip with
    ``is_padding=True`` until all ranks yield the same number of batches (no DDP hang). The
    task must drop padded samples from its metrics.

    Bad data: a truncated or unreadable shard, a sample with a missing or malformed field and a
    clip too short for one window are skipped with one ``BadSampleWarning`` naming the shard
    and key (from the DataLoader worker that met it) and counted: each sample carries in
    ``skipped`` the number of samples its worker dropped just before it, and
    :attr:`skipped_samples` accumulates ``batch["skipped"]`` of the batches a Trainer has
    loaded in this process (log it, summed over ranks). Depth NaN becomes an invalid pixel,
    +inf (sky) a valid 0 1/m, so neither reaches the loss as a wrong target. Missing shards
    raise ``FileNotFoundError`` in :meth:`setup`.

    Batches: the loaders ship them compact (:func:`~datamodules.samples.collate_clips`: uint8
    frames, each clip's colour parameters, float16 depth in metres) and
    :meth:`on_after_batch_transfer` finishes them on the accelerator
    (:func:`~datamodules.samples.finish_batch`), so a Trainer's steps get ``image``
    (B, T, 3, H, W) float RGB in [0, 1], colour-jittered; ``inverse_depth`` and ``valid``
    (B, T, Hd, Wd), 1/m and bool; ``colour`` (B, 4); ``key``, ``dataset``, ``scene`` lists;
    ``start_frame``, ``is_padding``, ``skipped`` (B,). Training ``(Hd, Wd) = (H, W)``. Code
    that iterates a loader itself calls ``finish_batch`` on each batch.

    Args:
        train_shards: Training shards; a list gives several training sets.
        train_weights: Mixing weight per training set (default: equal).
        train_strides: Strides drawn per window (default ``[1, 2]``), or one list per set.
        val_shards: Validation shards.
        test_shards: Test shards.
        predict_shards: Prediction shards.
        clip_length: Frames per training window.
        image_size: Training crop (height, width) in pixels.
        eval_short_side: Short side of evaluation images (``None``: native, rounded to 14 px).
        eval_long_side_max: Optional cap on the long side of evaluation images.
        batch_size: Training clips per batch and rank.
        eval_batch_size: Evaluation clips per batch (> 1 needs clips of equal size).
        num_workers: DataLoader worker processes per rank (0: load in the main process).
        shuffle_buffer: Training windows in the shuffle buffer.
        epoch_length: Training batches per epoch and rank.
        augment: Random crop, flip and colour jitter for training (else a central crop).
        seed: Base seed of the training streams.
    """

    def __init__(
        self,
        train_shards: str | list[str] | None = None,
        train_weights: list[float] | None = None,
        train_strides: list[int] | list[list[int]] | None = None,
        val_shards: str | list[str] | None = None,
        test_shards: str | list[str] | None = None,
        predict_shards: str | list[str] | None = None,
        clip_length: int = 5,
        image_size: tuple[int, int] = (518, 518),
        eval_short_side: int | None = 518,
        eval_long_side_max: int | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 4,
        shuffle_buffer: int = 64,
        epoch_length: int = 1000,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self._train_sets: list[list[str]] | None = None
        for name, value in (
            ("clip_length", clip_length),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("shuffle_buffer", shuffle_buffer),
            ("epoch_length", epoch_length),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.use_train_shards(train_shards, train_weights, train_strides)
        self.eval_shards = {"val": val_shards, "test": test_shards, "predict": predict_shards}
        self.clip_length = clip_length
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.eval_short_side, self.eval_long_side_max = eval_short_side, eval_long_side_max
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.shuffle_buffer = num_workers, shuffle_buffer
        self.epoch_length, self.augment, self.seed = epoch_length, augment, seed
        self.skipped_samples = 0
        self._eval_plans: dict[str, list[tuple[list[SampleEntry], int]]] = {}

    def use_train_shards(
        self,
        train_shards: str | list[str] | None,
        train_weights: list[float] | None = None,
        train_strides: list[int] | list[list[int]] | None = None,
    ) -> None:
        """Set the training sets with their weights and strides (checked, one per set).

        Raises:
            ValueError: If there is not one weight (and one stride list, when given per set)
                for each set.
        """
        self.train_shards = [train_shards] if isinstance(train_shards, str) else train_shards
        sets = len(self.train_shards or [])
        self.train_weights = self._per_set_weights(train_weights, sets)
        self.train_strides = self._per_set_strides(train_strides, sets)
        self._train_sets = None

    @staticmethod
    def _per_set_weights(weights: list[float] | None, sets: int) -> list[float]:
        weights = [1.0] * sets if weights is None else [float(w) for w in weights]
        if len(weights) != sets or any(w < 0 for w in weights) or (sets and sum(weights) <= 0):
            raise ValueError(
                f"train_weights {weights} must give one non-negative weight (not all zero) to "
                f"each of the {sets} training set(s)"
            )
        return weights

    @staticmethod
    def _per_set_strides(strides: list[int] | list[list[int]] | None, sets: int) -> list[list[int]]:
        strides = [1, 2] if strides is None else list(strides)
        per_set = strides if strides and isinstance(strides[0], list) else [strides] * sets
        if len(per_set) != sets or any(not s or min(s) < 1 for s in per_set):
            raise ValueError(
                f"train_strides {strides} must be a list of strides >= 1, or one such list for "
                f"each of the {sets} training set(s)"
            )
        return [[int(s) for s in set_strides] for set_strides in per_set]

    def setup(self, stage: str | None = None) -> None:
        """Find the shards of ``stage`` and plan evaluation; fails here on missing shards.

        Raises:
            FileNotFoundError: If a shard pattern matches no file.
            ValueError: If training has no shards.
        """
        rank, world_size = distributed_position()
        if stage == "fit" and not self.train_shards:
            raise ValueError("train_shards is not set: give the training shard pattern(s)")
        if stage in (None, "fit") and self.train_shards:
            self._train_sets = [expand_shards(pattern) for pattern in self.train_shards]
        for split, stages in _EVAL_STAGES.items():
            patterns = self.eval_shards[split]
            if patterns is None or (stage is not None and stage not in stages):
                continue
            entries = [entry for shard in expand_shards(patterns) for entry in index_shard(shard)]
            workers = max(1, self.num_workers)
            plan = plan_eval(entries, world_size, workers, self.eval_batch_size)
            self._eval_plans[split] = plan[rank]

    def train_dataloader(self) -> DataLoader:
        """Training windows: exactly ``epoch_length`` batches per epoch on every rank."""
        if self._train_sets is None:
            self.setup("fit")
        rank, _ = distributed_position()
        if self.augment:
            augment = ClipAugment(self.image_size)
        else:
            augment = ClipAugment(
                self.image_size, flip_p=0.0, jitter=0.0, hue=0.0, random_crop=False
            )
        dataset = TrainWindows(
            sets=self._train_sets,
            weights=self.train_weights,
            strides=self.train_strides,
            clip_length=self.clip_length,
            augment=augment,
            shuffle_buffer=self.shuffle_buffer,
            batches_per_rank=self.epoch_length,
            batch_size=self.batch_size,
            rank=rank,
            seed=self.seed,
        )
        return _EpochDataLoader(
            dataset,
            batch_size=self.batch_size,
            trainer_epoch=self._trainer_epoch,
            **self._loader_options(),
        )

    def _trainer_epoch(self) -> int | None:
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else trainer.current_epoch

    def val_dataloader(self) -> DataLoader | list:
        """Validation clips (none when ``val_shards`` is not set)."""
        return self._eval_dataloader("val")

    def test_dataloader(self) -> DataLoader | list:
        """Test clips."""
        return self._eval_dataloader("test")

    def predict_dataloader(self) -> DataLoader | list:
        """Prediction clips."""
        return self._eval_dataloader("predict")

    def _eval_dataloader(self, split: str) -> DataLoader | list:
        if self.eval_shards[split] is None:
            return []
        if split not in self._eval_plans:
            self.setup({"val": "validate"}.get(split, split))
        dataset = EvalClips(self._eval_plans[split], self.eval_short_side, self.eval_long_side_max)
        return DataLoader(dataset, batch_size=self.eval_batch_size, **self._loader_options())

    def _loader_options(self) -> dict:
        return {
            "num_workers": self.num_workers,
            "collate_fn": collate_clips,
            "pin_memory": torch.cuda.is_available(),
        }

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Accumulate :attr:`skipped_samples` from each batch a Trainer loads."""
        self.skipped_samples += int(batch["skipped"].sum())
        return batch

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Finish each batch on the accelerator, after its transfer (:func:`finish_batch`).

        Float frames in [0, 1] with each clip's colour change, and the depth targets, are made
        here from the compact uint8 / float16 batch the workers ship.
        """
        return finish_batch(batch)
