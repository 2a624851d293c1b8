"""Tests of flashdepth.inference: per-frame depth files and streaming prediction of a video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from torch import nn

from datamodules.video import VideoDataModule
from flashdepth import create_model
from flashdepth.inference import PredictionWriter
from flashdepth.task import FlashDepthTask
from tests.datamodules.test_video import write_video


def predict_video(task: FlashDepthTask, video: Path, out: Path, chunk: int, fmt: str) -> None:
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PredictionWriter(str(out), fmt)],
    )
    data = VideoDataModule(str(video), short_side=42, chunk_frames=chunk)
    trainer.predict(task, datamodule=data, return_predictions=False)


@pytest.fixture
def task(tmp_path: Path) -> FlashDepthTask:
    model = create_model("flashdepth-s")
    nn.init.normal_(model.temporal_out[1].weight, std=0.5)  # make the carried state matter
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    return FlashDepthTask(create_model("flashdepth-s"), init_weights=str(tmp_path / "weights.pth"))


def test_video_prediction_is_the_same_in_chunks_as_in_one_pass(task, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=7)
    predict_video(task, video, tmp_path / "chunks", chunk=3, fmt="npy")
    predict_video(task, video, tmp_path / "whole", chunk=7, fmt="npy")
    chunked = sorted((tmp_path / "chunks" / "video" / "clip").glob("*.npy"))
    assert [p.name for p in chunked] == [f"{i:06d}.npy" for i in range(7)]
    for path in chunked:
        depth = np.load(path)
        assert depth.shape == (48, 64) and depth.dtype == np.float16
        whole = np.load(tmp_path / "whole" / "video" / "clip" / path.name)
        np.testing.assert_allclose(depth.astype(np.float32), whole, rtol=2e-3, atol=2e-3)
    units = json.loads((tmp_path / "chunks" / "units.json").read_text())
    assert units["quantity"].startswith("relative inverse depth")


def test_png16_stores_hundredths_and_skips_padding(tmp_path: Path) -> None:
    writer = PredictionWriter(str(tmp_path), "png16")
    depth = torch.tensor([[0.0, 1.234], [99.5, 700.0]]).expand(2, 2, 2, 2)  # (B, T, H, W)
    prediction = {
        "inverse_depth": depth,
        "dataset": ["sintel", "sintel"],
        "scene": ["alley_1", "pad"],
        "start_frame": torch.tensor([10, 0]),
        "is_padding": torch.tensor([False, True]),
    }
    writer.write_on_batch_end(None, None, prediction, None, None, 0)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert written == ["sintel/alley_1/000010.png", "sintel/alley_1/000011.png"]
    stored = np.asarray(Image.open(tmp_path / "sintel/alley_1/000011.png"))
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, [[0, 123], [9950, 65535]])


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="file_format"):
        PredictionWriter("out", "exr")
