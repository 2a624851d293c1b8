"""Two-process DDP on CPU (gloo) through the CLI: gradients all-reduced, data split, metrics synced.

Each rank trains on different clips; if gradients were not averaged across ranks (the
reference implementation's bug), the replicas would drift apart after the first step. The
quickstart recipe runs with tiny data and the tiny test encoder: the test is about DDP.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from tests.cli_overrides import tiny_data, tiny_model, tiny_trainer

ROOT = Path(__file__).resolve().parent.parent


class RankProbe(Callback):
    """Write, per rank, the clips it trained on and a checksum of its final weights.

    Args:
        output_dir: Folder of the ``rank{N}.json`` files.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)
        self.seen: list[str] = []

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.initial = _checksum(pl_module)

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: dict, batch_idx: int
    ) -> None:
        starts = batch["start_frame"].tolist()
        self.seen += [f"{key}@{start}" for key, start in zip(batch["key"], starts, strict=True)]

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        record = {
            "world_size": trainer.world_size,
            "step": trainer.global_step,
            "initial_checksum": self.initial,
            "checksum": _checksum(pl_module),
            "seen": self.seen,
            "val": {k: float(v) for k, v in trainer.callback_metrics.items() if k[:4] == "val/"},
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(record))


def _checksum(module: LightningModule) -> str:
    weights = torch.cat([p.detach().flatten() for p in module.parameters()])
    return hashlib.sha256(weights.numpy().tobytes()).hexdigest()


def test_two_ranks_end_with_identical_weights_after_different_clips(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    command = [
        sys.executable,
        "-m",
        "flashdepth",
        "fit",
        "-c",
        str(ROOT / "recipes" / "quickstart.yaml"),
        *tiny_data(tmp_path / "cache", clips=8),
        *tiny_model(),
        *tiny_trainer(tmp_path / "run"),
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.max_steps=3",
        "--model.init_args.warmup_steps=0",  # full learning rates: unsynced replicas would drift
        "--trainer.val_check_interval=3",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.enable_checkpointing=false",
        "--trainer.logger=false",
        "--trainer.callbacks+=tests.test_ddp.RankProbe",
        f"--trainer.callbacks.output_dir={probe}",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["step"] for r in ranks] == [3, 3]
    assert ranks[0]["initial_checksum"] == ranks[1]["initial_checksum"]
    assert ranks[0]["checksum"] != ranks[0]["initial_checksum"]  # training moved the weights
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 3
    assert ranks[0]["seen"] != ranks[1]["seen"]
    # each rank validated one of the two videos; the metrics are synced, so they agree
    assert set(ranks[0]["val"]) >= {"val/synthetic/delta1", "val/delta1", "val/flicker"}
    assert ranks[0]["val"] == ranks[1]["val"]
