"""Tests of datamodules.video: chunked on-the-fly decoding of a video file."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from datamodules.video import VideoDataModule, video_scene_name


def write_video(path: Path, frames: int = 10, height: int = 48, width: int = 64) -> Path:
    """A video whose frame ``i`` is a flat grey of level ``20 * i``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 20 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_chunks_are_consecutive_resized_and_in_the_batch_contract(tmp_path: Path) -> None:
    video = write_video(tmp_path / "My Clip.mp4")
    data = VideoDataModule(str(video), short_side=42, chunk_frames=4)
    data.setup("predict")
    batches = list(data.predict_dataloader())
    assert [b["image"].shape[1] for b in batches] == [4, 4, 2]
    assert [int(b["start_frame"][0]) for b in batches] == [0, 4, 8]
    for b in batches:
        assert b["image"].shape[2:] == (3, 42, 56)  # 48x64 -> short side 42, sides of 14 px
        assert b["scene"] == ["my_clip"] and b["dataset"] == ["video"]
        assert not bool(b["is_padding"][0]) and b["output_size"].tolist() == [[48, 64]]
    levels = [float(f.mean()) * 255 for b in batches for f in b["image"][0]]
    assert levels == pytest.approx([20.0 * i for i in range(10)], abs=4.0)


def test_missing_video_is_named(tmp_path: Path) -> None:
    data = VideoDataModule(str(tmp_path / "absent.mp4"))
    with pytest.raises(FileNotFoundError, match="absent.mp4"):
        data.setup("predict")
    with pytest.raises(ValueError, match="chunk_frames"):
        VideoDataModule(str(tmp_path / "absent.mp4"), chunk_frames=0)


def test_scene_names_fit_the_key_alphabet() -> None:
    assert video_scene_name(Path("/x/Drone Shot #3.MOV")) == "drone_shot_3"
    assert video_scene_name(Path("/x/###.mp4")) == "video"
