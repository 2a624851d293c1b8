"""``VideoDataModule`` on damaged inputs: a video cut short, a file that is not a video.

A cut-short mp4 whose index (moov) comes first still states its full frame count: decoding
gives the frames that are there, then a warning names the file and both counts, and
``ended_early`` keeps that message (``flashdepth predict`` exits non-zero on it, see
``tests/test_cli.py``). The videos are written by ``tests/inference/media.py``.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from datamodules.video import IncompleteVideoWarning, VideoDataModule, VideoReadError
from tests.inference.media import truncate, write_video


def frames_of(data: VideoDataModule) -> list[int]:
    """The ``start_frame`` of every frame the prediction batches hold, in order."""
    data.setup("predict")
    return [
        int(batch["start_frame"][0]) + t
        for batch in data.predict_dataloader()
        for t in range(batch["image"].shape[1])
    ]


def test_a_cut_short_video_gives_its_frames_then_warns_with_both_counts(tmp_path: Path) -> None:
    whole = write_video(tmp_path / "whole.mp4", frames=24)
    cut = truncate(whole, tmp_path / "cut.mp4", 0.5)
    data = VideoDataModule(str(cut), short_side=28, chunk_frames=5)
    with pytest.warns(IncompleteVideoWarning) as caught:
        frames = frames_of(data)
    (warning,) = caught
    decoded = len(frames)
    assert 0 < decoded < 24 and frames == list(range(decoded))
    expected = (
        f"{cut} ended after {decoded} of the 24 frames its header states (truncated or "
        f"damaged file); depth covers those {decoded} frames only"
    )
    assert str(warning.message) == expected
    assert data.ended_early == expected


def test_a_whole_video_gives_every_frame_without_warning(tmp_path: Path) -> None:
    data = VideoDataModule(str(write_video(tmp_path / "whole.mp4", frames=7)), 28, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteVideoWarning)
        assert frames_of(data) == list(range(7))
    assert data.ended_early is None


def test_a_file_that_is_not_a_video_is_refused_in_setup(tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    with pytest.raises(VideoReadError, match=re.escape(f"cannot decode video {notes}")):
        VideoDataModule(str(notes)).setup("predict")
