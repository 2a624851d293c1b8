"""Tests for datamodules.clips.ClipDataModule on tiny shards written with ClipShardWriter."""

from __future__ import annotations

import io
import json
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.clips import ClipDataModule
from datamodules.format import Clip, make_key, make_meta
from datamodules.samples import finish_batch
from datamodules.shard_writer import ClipShardWriter, encode_clip
from datamodules.shards import BadSampleWarning

HEIGHT, WIDTH = 32, 48


def grey_clip(dataset: str, scene: str, frames: int, start: int = 0) -> Clip:
    """Frame t is a uniform grey of value 10 * t; depth 2 m with a sky row and a NaN column."""
    ids = list(range(start, start + frames))
    grey = (10 * np.arange(frames, dtype=np.uint8))[:, None, None, None]
    images = np.broadcast_to(grey, (frames, HEIGHT, WIDTH, 3)).copy()
    depth = np.full((frames, HEIGHT, WIDTH), 2.0, np.float32)
    depth[:, 0, :] = np.inf
    depth[:, :, 5] = np.nan
    return Clip(make_key(dataset, scene, start), make_meta(dataset, scene, ids), images, depth)


def write_set(
    folder: Path, dataset: str, clips_per_shard: list[int], frames: int = 12
) -> tuple[str, list[str]]:
    """Shards holding the given numbers of clips; returns (brace pattern, all keys)."""
    keys = []
    for index, count in enumerate(clips_per_shard):
        pattern = str(folder / f"{dataset}-%06d.tar")
        with ClipShardWriter(pattern, count, start_shard=index) as writer:
            for clip_index in range(count):
                clip = grey_clip(dataset, f"s{index}x{clip_index}", frames)
                writer.write(clip)
                keys.append(clip.key)
    last = len(clips_per_shard) - 1
    return str(folder / f"{dataset}-{{000000..{last:06d}}}.tar"), keys


def loader_batches(loader: torch.utils.data.DataLoader) -> list[dict]:
    """The loader's batches, finished as a Trainer finishes them after the transfer."""
    return [finish_batch(batch) for batch in loader]


def set_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world_size: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))


def test_training_batch_follows_the_contract(tmp_path: Path) -> None:
    pattern, keys = write_set(tmp_path, "toy", [2, 2])
    dm = ClipDataModule(
        train_shards=pattern,
        clip_length=3,
        image_size=(HEIGHT, WIDTH),
        batch_size=2,
        num_workers=0,
        epoch_length=2,
        augment=False,
    )
    dm.setup("fit")
    shipped = next(iter(dm.train_dataloader()))
    common = {"key", "dataset", "scene", "start_frame", "is_padding", "skipped", "colour"}
    assert set(shipped) == common | {"image", "depth"}
    assert shipped["image"].dtype == torch.uint8 and shipped["depth"].dtype == torch.float16
    assert shipped["colour"].tolist() == [[0.0, 1.0, 1.0, 0.0]] * 2  # augment=False
    batch = dm.on_after_batch_transfer(shipped, 0)
    assert set(batch) == common | {"image", "inverse_depth", "valid"}
    assert (
        batch["image"].shape == (2, 3, 3, HEIGHT, WIDTH) and batch["image"].dtype == torch.float32
    )
    assert torch.equal(batch["image"], shipped["image"].float() / 255)
    assert batch["inverse_depth"].shape == batch["valid"].shape == (2, 3, HEIGHT, WIDTH)
    assert batch["valid"].dtype == torch.bool
    assert batch["start_frame"].dtype == torch.long and batch["is_padding"].dtype == torch.bool
    assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    assert set(batch["key"]) <= set(keys) and batch["dataset"] == ["toy", "toy"]
    assert not batch["is_padding"].any() and int(batch["skipped"].sum()) == 0
    # 2 m -> 0.5 1/m; sky row -> valid 0; NaN column -> invalid 0
    inverse_depth, valid = batch["inverse_depth"], batch["valid"]
    assert torch.all(inverse_depth[:, :, 1:, 6:] == 0.5)
    assert torch.all(inverse_depth[:, :, 0, :] == 0.0) and valid[:, :, 0, 6:].all()
    assert not valid[:, :, :, 5].any() and torch.all(inverse_depth[:, :, :, 5] == 0.0)
    assert int(valid.logical_not().sum()) == 2 * 3 * HEIGHT


def test_windows_use_a_stride_from_the_list_and_mix_sets_by_weight(tmp_path: Path) -> None:
    pattern_a, _ = write_set(tmp_path, "seta", [2])
    pattern_b, _ = write_set(tmp_path, "setb", [2])
    dm = ClipDataModule(
        train_shards=[pattern_a, pattern_b],
        train_weights=[1.0, 0.0],
        train_strides=[[2], [1]],
        clip_length=3,
        image_size=(HEIGHT, WIDTH),
        batch_size=2,
        num_workers=0,
        epoch_length=4,
        augment=False,
    )
    dm.setup("fit")
    for batch in loader_batches(dm.train_dataloader()):
        assert batch["dataset"] == ["seta", "seta"]
        # frame t is grey 10 * t: consecutive window frames are 2 stored frames apart
        grey = batch["image"].mean(dim=(2, 3, 4)) * 255  # (B, T)
        assert torch.allclose(grey[:, 1:] - grey[:, :-1], torch.full((2, 2), 20.0), atol=1.5)
        assert torch.allclose(grey[:, 0], batch["start_frame"].float() * 10, atol=1.5)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_epoch_has_exact_length_and_ranks_draw_different_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, num_workers: int
) -> None:
    pattern, _ = write_set(tmp_path, "toy", [2, 2, 2, 2])
    streams = {}
    for rank in (0, 1):
        set_rank(monkeypatch, rank, 2)
        dm = ClipDataModule(
            train_shards=pattern,
            clip_length=2,
            image_size=(16, 16),
            batch_size=2,
            num_workers=num_workers,
            epoch_length=5,
            shuffle_buffer=4,
        )
        dm.setup("fit")
        loader = dm.train_dataloader()
        epochs = [loader_batches(loader) for _ in range(2)]
        assert [len(batches) for batches in epochs] == [5, 5] == [len(loader)] * 2
        streams[rank] = [
            [(k, int(s)) for b in batches for k, s in zip(b["key"], b["start_frame"], strict=True)]
            for batches in epochs
        ]
        assert streams[rank][0] != streams[rank][1]  # a new epoch draws a new stream
    assert streams[0][0] != streams[1][0]


def test_training_stream_follows_the_trainers_epoch(tmp_path: Path) -> None:
    """A resumed run draws the stream of the epoch it resumes in, not the first epoch's."""
    pattern, _ = write_set(tmp_path, "toy", [2, 2, 2, 2])

    def loader(current_epoch: int | None) -> DataLoader:
        dm = ClipDataModule(
            train_shards=pattern,
            clip_length=2,
            image_size=(16, 16),
            batch_size=2,
            num_workers=0,
            epoch_length=4,
            shuffle_buffer=4,
        )
        if current_epoch is not None:
            dm.trainer = types.SimpleNamespace(current_epoch=current_epoch)
        dm.setup("fit")
        return dm.train_dataloader()

    def windows(batches: list[dict]) -> list[tuple[str, int]]:
        return [
            (k, int(s)) for b in batches for k, s in zip(b["key"], b["start_frame"], strict=True)
        ]

    uninterrupted = loader(None)
    third = windows([loader_batches(uninterrupted) for _ in range(3)][2])  # epochs 0, 1, 2
    assert windows(loader_batches(loader(2))) == third
    assert windows(loader_batches(loader(0))) != third


def _truncate(shard: str) -> None:
    data = Path(shard).read_bytes()
    Path(shard).write_bytes(data[: len(data) // 2])


def write_without_depth(path: Path, good: Clip, bad: Clip) -> None:
    """A shard whose second sample lacks frame 1's depth."""
    with tarfile.open(path, "w") as archive:
        for clip, drop in ((good, None), (bad, "001.depth.npz")):
            sample = encode_clip(clip)
            for field, value in sample.items():
                if field == "__key__" or field == drop:
                    continue
                info = tarfile.TarInfo(f"{clip.key}.{field}")
                info.size = len(value)
                archive.addfile(info, io.BytesIO(value))


def test_bad_shards_and_samples_are_skipped_counted_and_training_continues(
    tmp_path: Path,
) -> None:
    pattern, keys = write_set(tmp_path, "toy", [4])
    pattern = str(tmp_path / "toy-000000.tar")
    _truncate(pattern)
    missing = tmp_path / "holes.tar"
    write_without_depth(missing, grey_clip("toy", "good", 6), grey_clip("toy", "bad", 6))
    dm = ClipDataModule(
        train_shards=[pattern, str(missing)],
        clip_length=3,
        train_strides=[1],
        image_size=(16, 16),
        batch_size=2,
        num_workers=0,
        epoch_length=8,
        shuffle_buffer=2,
    )
    dm.setup("fit")
    with pytest.warns(BadSampleWarning) as record:
        batches = loader_batches(dm.train_dataloader())
    assert len(batches) == 8
    messages = [str(w.message) for w in record]
    assert any(
        "holes.tar" in m and "toy_bad_000000" in m and "001.depth.npz" in m for m in messages
    )
    assert any(Path(pattern).name in m and "unreadable tar" in m for m in messages)
    assert len(messages) == len(set(messages))  # one warning per shard and key
    assert sum(int(b["skipped"].sum()) for b in batches) >= 2
    assert "toy_bad_000000" not in {key for b in batches for key in b["key"]}


def test_missing_pattern_raises_file_not_found_naming_it(tmp_path: Path) -> None:
    pattern = str(tmp_path / "nothing-{000000..000003}.tar")
    dm = ClipDataModule(train_shards=pattern)
    with pytest.raises(FileNotFoundError, match="nothing-"):
        dm.setup("fit")


def test_argument_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="train_weights"):
        ClipDataModule(train_shards=["a", "b"], train_weights=[1.0])
    with pytest.raises(ValueError, match="train_strides"):
        ClipDataModule(train_shards=["a", "b"], train_strides=[[1], [1], [2]])
    with pytest.raises(ValueError, match="clip_length"):
        ClipDataModule(clip_length=0)


@pytest.mark.filterwarnings("ignore:Your `IterableDataset` has `__len__` defined")
def test_trainer_counts_skipped_samples_and_runs_validation(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    class Probe(pl.LightningModule):
        """Records what the steps receive: batches finished by on_after_batch_transfer."""

        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))
            self.val_keys: list[str] = []
            self.images: list[torch.Tensor] = []

        def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
            self.images.append(batch["image"])
            return (self.weight - batch["inverse_depth"].mean()) ** 2

        def validation_step(self, batch: dict, batch_idx: int) -> None:
            self.images.append(batch["image"])
            padding = batch["is_padding"].tolist()
            self.val_keys += [k for k, p in zip(batch["key"], padding, strict=True) if not p]

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    good, bad = grey_clip("toy", "good", 6), grey_clip("toy", "bad", 6)
    write_without_depth(tmp_path / "train.tar", good, bad)
    val_pattern, val_keys = write_set(tmp_path, "val", [1, 2], frames=2)
    dm = ClipDataModule(
        train_shards=str(tmp_path / "train.tar"),
        val_shards=val_pattern,
        clip_length=3,
        image_size=(16, 16),
        batch_size=1,
        num_workers=0,
        epoch_length=4,
        shuffle_buffer=1,
        eval_short_side=14,
    )
    probe = Probe()
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    with pytest.warns(BadSampleWarning):
        trainer.fit(probe, datamodule=dm)
    assert trainer.global_step == 4
    assert len(probe.images) == 4 + 3  # 4 training batches, 3 validation clips
    for image in probe.images:  # float in [0, 1] on the training side and the validation side
        assert image.dtype == torch.float32 and 0.0 <= float(image.min()) <= float(image.max()) <= 1
    grey_levels = {round(float(image.mean()) * 255) for image in probe.images[4:]}
    assert grey_levels <= {0, 5, 10}  # validation: the grey frames (0, 10) / 255, no jitter
    assert dm.skipped_samples >= 1
    assert sorted(probe.val_keys) == sorted(val_keys)
    assert json.loads(json.dumps(dict(dm.hparams)))["epoch_length"] == 4
