"""``SyntheticClipDataModule``: the quickstart's data, rendered on first use, no download."""

from __future__ import annotations

import inspect

from datamodules.clips import ClipDataModule
from datamodules.synthetic import ensure_synthetic_dataset


class SyntheticClipDataModule(ClipDataModule):
    """:class:`~datamodules.clips.ClipDataModule` over procedurally rendered synthetic scenes.

    :meth:`prepare_data` renders the train/val/test shard sets into ``cache_dir`` the first
    time (about 64 clips of 16 frames at 126x224 by default, well under a minute on 2 CPU
    cores) and finds them there afterwards; the folder is named after the configuration, so
    changing a size renders a new set. Every rank finds the same folder in :meth:`setup`.
    Prediction uses the test split. Everything else (windows, augmentation, DDP-safe
    evaluation, bad-data handling) is :class:`~datamodules.clips.ClipDataModule`'s.

    Args:
        cache_dir: Folder of the rendered sets (default:
            :func:`datamodules.synthetic.default_cache_dir`).
        num_train_clips: Clips of the training split.
        num_val_clips: Clips of the validation split (also used for the test split).
        frames: Frames per stored clip.
        height: Rendered height in pixels.
        width: Rendered width in pixels.
        clips_per_shard: Clips per shard.
        train_strides: Strides drawn per training window.
        clip_length: Frames per training window.
        image_size: Training crop (height, width) in pixels, multiples of 14.
        eval_short_side: Short side of evaluation images (``None``: native, rounded to 14 px).
        batch_size: Training clips per batch and rank.
        eval_batch_size: Evaluation clips per batch.
        num_workers: DataLoader worker processes per rank.
        shuffle_buffer: Training windows in the shuffle buffer.
        epoch_length: Training batches per epoch and rank.
        augment: Random crop, flip and colour jitter for training.
        seed: Seed of the rendered scenes and of the training streams.
    """

    def __init__(
        self,
        cache_dir: str | None = None,
        num_train_clips: int = 48,
        num_val_clips: int = 8,
        frames: int = 16,
        height: int = 126,
        width: int = 224,
        clips_per_shard: int = 4,
        train_strides: list[int] | None = None,
        clip_length: int = 5,
        image_size: tuple[int, int] = (112, 196),
        eval_short_side: int | None = 126,
        batch_size: int = 2,
        eval_batch_size: int = 1,
        num_workers: int = 0,
        shuffle_buffer: int = 16,
        epoch_length: int = 24,
        augment: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(
            train_strides=train_strides,
            clip_length=clip_length,
            image_size=image_size,
            eval_short_side=eval_short_side,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            shuffle_buffer=shuffle_buffer,
            epoch_length=epoch_length,
            augment=augment,
            seed=seed,
        )
        # keep only this class's arguments, so that its hparams rebuild it
        own = inspect.signature(SyntheticClipDataModule).parameters
        self.remove_ignored_hparams([name for name in self.hparams if name not in own])
        self.synthetic = {
            "cache_dir": cache_dir,
            "train_clips": num_train_clips,
            "val_clips": num_val_clips,
            "test_clips": num_val_clips,
            "frames": frames,
            "height": height,
            "width": width,
            "seed": seed,
            "clips_per_shard": clips_per_shard,
        }
        self._strides = train_strides

    def prepare_data(self) -> None:
        """Render the synthetic shard sets unless the cache already holds them."""
        ensure_synthetic_dataset(**self.synthetic, progress=True)

    def setup(self, stage: str | None = None) -> None:
        """Point the splits at the cached sets (rendering them if prepare_data did not run)."""
        patterns = ensure_synthetic_dataset(**self.synthetic)
        self.use_train_shards(patterns["train"], None, self._strides)
        self.eval_shards = {"val": patterns["val"], "test": patterns["test"]}
        self.eval_shards["predict"] = patterns["test"]
        super().setup(stage)
