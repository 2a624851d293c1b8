"""Tests for datamodules.synthetic_clips: shards rendered on first use, then found again."""

from __future__ import annotations

from pathlib import Path

import torch

from datamodules.synthetic_clips import SyntheticClipDataModule

TINY = {
    "num_train_clips": 4,
    "num_val_clips": 2,
    "frames": 6,
    "height": 42,
    "width": 70,
    "clips_per_shard": 1,
    "clip_length": 3,
    "image_size": (28, 56),
    "eval_short_side": 42,
    "epoch_length": 2,
}


def test_prepare_data_renders_once_and_batches_follow_the_contract(tmp_path: Path) -> None:
    dm = SyntheticClipDataModule(cache_dir=str(tmp_path), **TINY)
    dm.prepare_data()
    shards = sorted(tmp_path.rglob("*.tar"))
    assert len(shards) == 4 + 2 + 2  # one clip per shard: train, val, test
    stamps = [shard.stat().st_mtime_ns for shard in shards]

    again = SyntheticClipDataModule(cache_dir=str(tmp_path), **TINY)
    again.prepare_data()
    again.setup("fit")
    assert [shard.stat().st_mtime_ns for shard in sorted(tmp_path.rglob("*.tar"))] == stamps

    shipped = list(again.train_dataloader())
    assert len(shipped) == 2 and shipped[0]["image"].dtype == torch.uint8
    batch = again.on_after_batch_transfer(shipped[0], 0)  # as a Trainer finishes it
    assert batch["image"].shape == (2, 3, 3, 28, 56) and batch["image"].dtype == torch.float32
    assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    assert batch["inverse_depth"].shape == batch["valid"].shape == (2, 3, 28, 56)
    assert batch["dataset"] == ["synthetic", "synthetic"]
    # rendered scenes: finite positive inverse depth (1/m) with some sky at exactly 0
    assert torch.isfinite(batch["inverse_depth"]).all() and batch["valid"].all()
    assert float(batch["inverse_depth"].max()) > 0

    val = [again.on_after_batch_transfer(b, 0) for b in again.val_dataloader()]
    assert len(val) == 2 and not any(b["is_padding"].any() for b in val)
    assert len({b["key"][0] for b in val}) == 2
    assert val[0]["image"].shape == (1, 6, 3, 42, 70)


def test_hyperparameters_rebuild_the_datamodule(tmp_path: Path) -> None:
    dm = SyntheticClipDataModule(cache_dir=str(tmp_path), **TINY)
    rebuilt = SyntheticClipDataModule(**dict(dm.hparams))
    assert rebuilt.synthetic == dm.synthetic and rebuilt.image_size == (28, 56)
    assert "train_shards" not in dm.hparams
