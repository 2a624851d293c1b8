"""Tests of run_stream: frames written in order, aborts that leave no final name, live drops."""

from __future__ import annotations

import json
import threading
import time

import av
import numpy as np
import OpenEXR
import pytest

from flashdepth.inference.frames import VideoInfo
from flashdepth.inference.pipeline import run_stream
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.inference.sinks import completed, make_sinks
from flashdepth.inference.sources import BufferedSource, SourceError, open_source
from tests.cli_overrides import tiny_preset
from tests.inference.media import NTSC, truncate, write_video


class FakePredictor:
    """Depth = the red channel, after an optional delay (a slow model)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        time.sleep(self.delay_s)
        return rgb[..., 0].astype(np.float32)

    def describe(self) -> dict:
        return {"model": "Fake"}


class RecordingSink:
    """Remembers what it was asked to do; fails on frame ``fail_at``."""

    file_format = "record"

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.indices: list[int] = []
        self.events: list[str] = []
        self.threads: set[str] = set()

    def open(self, info, out_dir) -> None:
        self.events.append("open")

    def write(self, frame, depth) -> None:
        if frame.index == self.fail_at:
            raise OSError(f"disk full at frame {frame.index}")
        self.indices.append(frame.index)
        self.threads.add(threading.current_thread().name)

    def close(self) -> None:
        self.events.append("close")

    def abort(self) -> None:
        self.events.append("abort")


def read_z(path) -> np.ndarray:
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        return np.array(exr.channels()["Z"].pixels)


def decoded_frames(folder) -> int:
    with av.open(str(folder)) as container:
        return len(list(container.decode(video=0)))


def test_every_frame_is_written_in_order_with_the_model(tmp_path):
    video = write_video(tmp_path / "walk.mp4", frames=4, size=(40, 60), audio="aac")
    model = tiny_preset("flashdepth-s-none")
    predictor = StreamingPredictor(model, resolution=28)
    reports = []
    sinks = make_sinks(["exr", "mp4"], preset="ultrafast")
    result = run_stream(
        open_source(str(video)), predictor, sinks, tmp_path / "out", on_frame=reports.append
    )
    assert (result.frames_written, result.expected_frames, result.frames_dropped) == (4, 4, 0)
    assert not result.ended_early and result.complete and result.name == "walk"
    assert [report.index for report in reports] == list(range(4))
    assert all(report.latency_ms > 0 for report in reports)
    assert result.latency_ms_p95 >= result.latency_ms_median > 0
    # The written depth is the predictor's, frame by frame, state carried in order.
    predictor.reset()
    folder = tmp_path / "out" / "walk"
    for frame in open_source(str(video)):
        expected = predictor.predict(frame.rgb)
        np.testing.assert_array_equal(read_z(folder / "exr" / f"{frame.index:06d}.exr"), expected)
    assert decoded_frames(folder / "walk_depth.mp4") == 4
    units = json.loads((folder / "units.json").read_text())
    assert units["video"]["frames"] == 4 and units["video"]["fps"] == "30000/1001"
    assert units["model"]["model"] == "FlashDepth" and list(units["formats"]) == ["exr", "mp4"]
    assert completed(tmp_path / "out", "walk", ["exr", "mp4"])


def frames_source(count: int, name: str = "clip") -> BufferedSource:
    info = VideoInfo(name, f"{name}.mp4", 16, 12, fps=NTSC, num_frames=count)
    frames = (np.full((12, 16, 3), index, np.uint8) for index in range(count))
    return BufferedSource(info, frames)


def test_a_failing_sink_aborts_and_leaves_no_final_names(tmp_path):
    recorder, failing = RecordingSink(), RecordingSink(fail_at=4)
    sinks = [recorder, *make_sinks(["mp4", "npy"], preset="ultrafast"), failing]
    predictor = FakePredictor()
    with pytest.raises(OSError, match="disk full at frame 4"):
        run_stream(frames_source(10), predictor, sinks, tmp_path)
    folder = tmp_path / "clip"
    assert predictor.resets == 1
    assert recorder.events == ["open", "abort"] and failing.events == ["open", "abort"]
    assert recorder.indices == [0, 1, 2, 3, 4] and failing.indices == [0, 1, 2, 3]
    assert not (folder / "clip_depth.mp4").exists() and not (folder / "units.json").exists()
    # The sinks before the failing one got frame 4 too; no frame after it was written.
    assert decoded_frames(folder / "clip_depth.partial.mp4") == 5
    written = sorted(path.name for path in (folder / "npy").iterdir())
    assert written == [f"{index:06d}.npy" for index in range(5)]
    assert recorder.threads == {"write depth"}  # writing runs behind, on its own thread
    assert not completed(tmp_path, "clip")


def test_keyboard_interrupt_writes_what_was_computed_then_aborts(tmp_path):
    def interrupt(report) -> None:
        if report.index == 4:
            raise KeyboardInterrupt

    recorder = RecordingSink()
    sinks = [recorder, *make_sinks(["mp4"], preset="ultrafast")]
    with pytest.raises(KeyboardInterrupt):
        run_stream(frames_source(30), FakePredictor(), sinks, tmp_path, on_frame=interrupt)
    folder = tmp_path / "clip"
    assert recorder.indices == [0, 1, 2, 3, 4] and recorder.events == ["open", "abort"]
    assert sorted(path.name for path in folder.iterdir()) == ["clip_depth.partial.mp4"]
    assert decoded_frames(folder / "clip_depth.partial.mp4") == 5
    # A rerun starts over and finishes: final names only, nothing partial left behind.
    sinks = make_sinks(["mp4"], preset="ultrafast")
    assert run_stream(frames_source(30), FakePredictor(), sinks, tmp_path).complete
    assert sorted(path.name for path in folder.iterdir()) == ["clip_depth.mp4", "units.json"]
    assert decoded_frames(folder / "clip_depth.mp4") == 30


def test_an_output_folder_that_cannot_be_written_is_a_clear_error(tmp_path):
    blocked = tmp_path / "out"
    blocked.write_text("a file where the output folder should be")
    recorder = RecordingSink()
    with pytest.raises(
        OSError,
        match=r"cannot write the npy output of clip under .*out .*"
        r"give an output folder you can write to",
    ):
        run_stream(frames_source(3), FakePredictor(), [recorder, *make_sinks(["npy"])], blocked)
    assert recorder.events == ["open", "abort"]


def test_a_truncated_video_writes_its_good_frames_but_is_not_complete(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", frames=24)
    source = open_source(str(truncate(whole, tmp_path / "cut.mp4", 0.5)))
    recorder = RecordingSink()
    result = run_stream(source, FakePredictor(), [recorder], tmp_path / "out")
    assert result.ended_early and not result.complete
    assert 0 < result.frames_written < result.expected_frames == 24
    assert recorder.indices == list(range(result.frames_written))
    assert recorder.events == ["open", "abort"] and not completed(tmp_path / "out", "cut")


def test_a_decoding_error_is_raised_after_writing_the_good_frames(tmp_path):
    def frames():
        yield from (np.zeros((12, 16, 3), np.uint8) for _ in range(3))
        raise ValueError("corrupt packet")

    source = BufferedSource(VideoInfo("bad", "bad.mp4", 16, 12, fps=NTSC), frames())
    recorder = RecordingSink()
    with pytest.raises(SourceError, match="decoding bad.mp4 failed after 3 frame"):
        run_stream(source, FakePredictor(), [recorder], tmp_path)
    assert recorder.indices == [0, 1, 2] and recorder.events == ["open", "abort"]


def test_drop_frames_keeps_a_slow_model_live_and_counts_drops(tmp_path):
    recorder = RecordingSink()
    result = run_stream(
        frames_source(40, "live"),
        FakePredictor(delay_s=0.02),
        [recorder],
        tmp_path,
        drop_frames=True,
    )
    assert result.frames_dropped > 10  # frames arrive far faster than the model runs
    assert result.frames_written + result.frames_dropped == 40
    assert recorder.indices == sorted(recorder.indices) and recorder.indices[-1] == 39
    assert len(recorder.indices) == result.frames_written and result.complete
