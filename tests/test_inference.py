"""Tests of ``flashdepth predict``'s writing and state carrying, shared with ``flashdepth stream``.

The predict path (``FlashDepthTask.predict_step`` through ``ClipPredictor``, written by
``PredictionWriter``) and the stream path (``StreamingPredictor`` through ``run_stream`` into
the sinks) must give the same files with the same values: one way to carry the temporal
state, one way to write depth. The models are presets at the tiny test size.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from datamodules.video import VideoDataModule
from flashdepth.inference import PredictionWriter, StreamingPredictor, completed, make_sinks
from flashdepth.inference.pipeline import run_stream
from flashdepth.inference.sources import open_source
from flashdepth.inference.writer import merge_written
from flashdepth.task import FlashDepthTask
from tests.cli_overrides import tiny_preset
from tests.inference.media import write_video

HEIGHT, WIDTH = 48, 64


def predictor_trainer(out: Path, formats: str = "npy") -> Trainer:
    return Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PredictionWriter(str(out), formats)],
    )


def predict_video(task: FlashDepthTask, video: Path, out: Path, chunk: int) -> None:
    data = VideoDataModule(str(video), short_side=42, chunk_frames=chunk)
    predictor_trainer(out).predict(task, datamodule=data, return_predictions=False)


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    model = tiny_preset("flashdepth-s-gru")
    nn.init.normal_(model.temporal_out[1].weight, std=0.5)  # make the carried state matter
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    return tmp_path / "weights.pth"


@pytest.fixture
def task(weights: Path) -> FlashDepthTask:
    return FlashDepthTask(tiny_preset("flashdepth-s-gru"), init_weights=str(weights))


def test_predict_writes_what_stream_writes_in_chunks_of_any_length(
    task: FlashDepthTask, weights: Path, tmp_path: Path
) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=7, size=(HEIGHT, WIDTH))
    predict_video(task, video, tmp_path / "chunks", chunk=3)
    predict_video(task, video, tmp_path / "whole", chunk=7)
    model = tiny_preset("flashdepth-s-gru")
    model.load_state_dict(torch.load(weights))
    predictor = StreamingPredictor(model, resolution=42)
    run_stream(open_source(str(video)), predictor, make_sinks(["npy"]), tmp_path / "stream")

    chunked = sorted((tmp_path / "chunks" / "video" / "clip" / "npy").glob("*.npy"))
    assert [p.name for p in chunked] == [f"{i:06d}.npy" for i in range(7)]
    for path in chunked:
        depth = np.load(path)
        assert depth.shape == (HEIGHT, WIDTH) and depth.dtype == np.float32
        np.testing.assert_array_equal(depth, np.load(tmp_path / "whole/video/clip/npy" / path.name))
        np.testing.assert_array_equal(depth, np.load(tmp_path / "stream/clip/npy" / path.name))
    first, last = np.load(chunked[0]), np.load(chunked[-1])
    assert not np.allclose(first, last, atol=1e-3)  # the frames differ: the test has teeth
    assert completed(tmp_path / "chunks" / "video", "clip", ["npy"])
    units = json.loads((tmp_path / "chunks/video/clip/units.json").read_text())
    assert units["quantity"].startswith("relative inverse depth")
    assert units["video"]["frames"] == 7 and units["video"]["resolution"] == [WIDTH, HEIGHT]
    assert units["model"]["model"] == "FlashDepth" and "100 / depth_in_metres" in units["scale"]
    assert units["formats"]["npy"] == {
        "files": "npy/{index:06d}.npy",
        "dtype": "float32",
        "decode": "value = array",
    }


def prediction_batch() -> tuple[dict, dict]:
    """A predict_step output of two clips (the second padding) and its batch."""
    depth = torch.tensor([[0.0, 1.234], [99.5, 700.0]]).expand(2, 2, 2, 2)  # (B, T, H, W)
    prediction = {
        "inverse_depth": depth,
        "dataset": ["sintel", "sintel"],
        "scene": ["alley_1", "pad"],
        "start_frame": torch.tensor([10, 0]),
        "is_padding": torch.tensor([False, True]),
    }
    return prediction, {"image": torch.rand(2, 2, 3, 14, 14)}


def test_png16_stores_hundredths_skips_padding_and_states_units_at_the_end(tmp_path: Path) -> None:
    writer = PredictionWriter(str(tmp_path), "png16,exr")
    prediction, batch = prediction_batch()
    writer.write_on_batch_end(None, None, prediction, None, batch, 0)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png"))
    assert written == ["sintel/alley_1/png16/000010.png", "sintel/alley_1/png16/000011.png"]
    assert len(list(tmp_path.rglob("*.exr"))) == 2
    stored = np.asarray(Image.open(tmp_path / "sintel/alley_1/png16/000011.png"))
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, [[0, 123], [9950, 65535]])
    assert not completed(tmp_path / "sintel", "alley_1")  # not before prediction ends

    trainer = SimpleNamespace(is_global_zero=True, precision="32-true", ckpt_path=None)
    writer.on_predict_end(trainer, SimpleNamespace(model=tiny_preset("flashdepth-s-none")))
    assert completed(tmp_path / "sintel", "alley_1", ["png16", "exr"])
    assert not (tmp_path / "sintel" / "pad").exists()
    units = json.loads((tmp_path / "sintel/alley_1/units.json").read_text())
    assert units["video"]["frames"] == 2 and units["video"]["resolution"] == [2, 2]
    assert units["formats"]["png16"]["decode"] == "value = png / 100"


def clip_batch(start: int, channels: int = 3) -> dict:
    """One 2-frame clip of video ``a`` starting at frame ``start`` (4 channels: not RGB)."""
    generator = torch.Generator().manual_seed(start)
    return {
        "image": torch.rand(1, 2, channels, 28, 28, generator=generator),
        "key": [f"video_a_{start:06d}"],
        "dataset": ["video"],
        "scene": ["a"],
        "start_frame": torch.tensor([start]),
        "is_padding": torch.tensor([False]),
    }


def test_a_failed_prediction_keeps_its_frames_but_marks_nothing_complete(
    task: FlashDepthTask, tmp_path: Path
) -> None:
    batches = DataLoader([clip_batch(0), clip_batch(2, channels=4)], batch_size=None)
    with pytest.raises(ValueError, match="RGB"):
        predictor_trainer(tmp_path, "exr").predict(task, batches)
    exr = sorted(p.name for p in (tmp_path / "video" / "a" / "exr").glob("*.exr"))
    assert exr == ["000000.exr", "000001.exr"]
    assert not completed(tmp_path / "video", "a")


def test_a_video_split_across_ranks_counts_every_rank_frames() -> None:
    rank0 = {("sintel", "alley_1"): (4, (2, 3)), ("sintel", "cave_2"): (2, (2, 3))}
    rank1 = {("sintel", "alley_1"): (3, (2, 3)), ("eth3d", "lab"): (5, (4, 4))}
    assert merge_written([rank0, rank1]) == {
        ("sintel", "alley_1"): (7, (2, 3)),
        ("sintel", "cave_2"): (2, (2, 3)),
        ("eth3d", "lab"): (5, (4, 4)),
    }


@pytest.mark.parametrize(
    ("formats", "message"),
    [("mp4", "per-frame formats.*flashdepth stream"), ("npy,npy", "given twice"), ("", "choose")],
)
def test_formats_the_writer_cannot_write_are_refused(formats: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PredictionWriter("out", formats)
