"""Resuming with ``--ckpt_path`` continues the same run: step, optimiser, scheduler, weights.

The data is a fixed list of clips per epoch, so an interrupted run and an uninterrupted one
see the same batches when the interruption falls on an epoch boundary.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from flashdepth.cli import build_cli
from tests.cli_overrides import tiny_trainer

QUICKSTART = str(Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml")


class FixedClips(LightningDataModule):
    """The same ``batches`` random clips (42x56, 2 frames, batch 1) every epoch.

    Args:
        batches: Training batches per epoch.
    """

    def __init__(self, batches: int = 2) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.batches = [
            {
                "image": torch.rand(1, 2, 3, 42, 56, generator=generator),
                "inverse_depth": torch.rand(1, 2, 42, 56, generator=generator),
                "valid": torch.ones(1, 2, 42, 56, dtype=torch.bool),
            }
            for _ in range(batches)
        ]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)


def run(root: Path, max_steps: int, *extra: str):
    args = ["fit", "-c", QUICKSTART, *tiny_trainer(root), "--data=tests.test_resume.FixedClips"]
    args += [f"--trainer.max_steps={max_steps}", "--trainer.limit_val_batches=0"]
    args += ["--trainer.num_sanity_val_steps=0", "--model.warmup_steps=3", *extra]
    return build_cli(args)


def test_resume_from_last_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = run(tmp_path / "straight", 4)
    checkpoint = [
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={tmp_path / 'ckpt'}",
        "--trainer.callbacks.save_last=true",
        "--trainer.callbacks.every_n_train_steps=1",
    ]
    first = run(tmp_path / "first", 2, *checkpoint)
    assert first.trainer.global_step == 2
    resumed = run(tmp_path / "resumed", 4, f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}")
    assert resumed.trainer.global_step == straight.trainer.global_step == 4

    expected = straight.model.state_dict()
    for name, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)
    straight_lr = [g["lr"] for g in straight.trainer.optimizers[0].param_groups]
    assert [g["lr"] for g in resumed.trainer.optimizers[0].param_groups] == straight_lr
    # warm-up over: the quickstart's ViT learning rate (LinearLR multiplies factors: 1 ulp)
    assert straight_lr[0] == pytest.approx(5e-5, rel=1e-12)
