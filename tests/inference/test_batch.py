"""Tests of BatchRunner: a batch of inputs through one predictor, failures and all.

Failures are recorded while the batch goes on; cut-short videos, output name clashes found
when opening, live input stopped by Ctrl-C, progress lines and the report. The predictor is a
FlashDepth without temporal module at the tiny test size (random weights) at a 28 px network
input, and sources and sinks are the real ones on tiny videos written here.
"""

from __future__ import annotations

import io
import json
import re
import signal
from fractions import Fraction
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from rich.console import Console

from flashdepth.inference import batch
from flashdepth.inference.batch import REPORT_FILE, BatchProgress, BatchRunner, InputResult
from flashdepth.inference.frames import VideoInfo
from flashdepth.inference.pipeline import FrameReport
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.inference.sources import BufferedSource
from tests.cli_overrides import tiny_preset
from tests.inference.media import ramp_frame, truncate, write_png, write_video

HEIGHT, WIDTH = 48, 64


@pytest.fixture(scope="module")
def predictor() -> StreamingPredictor:
    return StreamingPredictor(tiny_preset("flashdepth-s-none"), resolution=28)


def runner(predictor: StreamingPredictor, out: Path, formats: list[str]) -> BatchRunner:
    console = Console(file=io.StringIO(), width=200)
    return BatchRunner(predictor, out, formats, console=console, progress=False)


def printed(runner: BatchRunner) -> str:
    return runner.console.file.getvalue()  # type: ignore[attr-defined]


def read_exr(path: Path) -> np.ndarray:
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        channels = exr.channels()
        assert list(channels) == ["Z"]
        return channels["Z"].pixels


def test_a_cut_short_video_fails_with_its_counts_and_keeps_its_good_frames(
    predictor: StreamingPredictor, tmp_path: Path
) -> None:
    good = write_video(tmp_path / "good.mp4", frames=3)
    cut = truncate(write_video(tmp_path / "full.mp4", frames=8), tmp_path / "cut.mp4", 0.6)
    run = runner(predictor, tmp_path / "out", ["exr", "mp4"])

    report = run.run([str(cut), str(good)])

    failed, done = report.results
    match = re.search(r"ended after (\d+) of 8 frames", failed.reason or "")
    assert failed.status == "failed" and match and str(cut) in failed.reason
    kept = int(match.group(1))
    assert 0 < kept < 8 and failed.frames == kept and failed.expected_frames == 8
    frames = sorted((tmp_path / "out" / "cut" / "exr").glob("*.exr"))
    assert [p.name for p in frames] == [f"{i:06d}.exr" for i in range(kept)]
    for path in frames:
        depth = read_exr(path)
        assert depth.shape == (HEIGHT, WIDTH) and np.isfinite(depth).all()
    assert not (tmp_path / "out" / "cut" / "cut_depth.mp4").exists()
    assert (tmp_path / "out" / "cut" / "cut_depth.partial.mp4").is_file()
    assert not (tmp_path / "out" / "cut" / "units.json").exists()
    assert done.status == "done" and done.frames == 3
    assert (tmp_path / "out" / "good" / "good_depth.mp4").is_file()
    assert report.exit_code == 1
    assert f"warning: cut failed: {cut} ended after {kept} of 8 frames" in printed(run)
    saved = json.loads((tmp_path / "out" / REPORT_FILE).read_text())
    assert [entry["status"] for entry in saved["inputs"]] == ["failed", "done"]
    assert saved["totals"]["frames"] == kept + 3 and saved["totals"]["failed"] == 1


def test_a_failing_input_does_not_stop_the_batch(
    predictor: StreamingPredictor, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).bytes(2000))
    gappy = tmp_path / "gappy"
    gappy.mkdir()
    for number in (1, 3):
        write_png(gappy / f"frame_{number:04d}.png", ramp_frame(number))
    good = write_video(tmp_path / "good.mp4", frames=2)
    specs = [str(tmp_path / "absent.mp4"), str(broken), "/dev/video9", str(gappy), str(good)]
    run = runner(predictor, tmp_path / "out", ["npy"])

    report = run.run(specs)

    assert [r.status for r in report.results] == ["failed"] * 4 + ["done"]
    absent, not_video, camera, gap = (r.reason for r in report.results[:4])
    assert f"input {specs[0]} does not exist" in absent
    assert str(broken) in not_video and "not a readable video" in not_video
    assert "cannot open /dev/video9" in camera
    assert f"image sequence {gappy} has no frame number [2]" in gap
    assert report.results[4].frames == 2 and len(list((tmp_path / "out/good/npy").iterdir())) == 2
    assert (report.count("done"), report.count("failed"), report.exit_code) == (1, 4, 1)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good", REPORT_FILE]
    assert printed(run).count("warning:") == 4


def test_two_sequences_that_would_share_a_folder_fail_the_second(
    predictor: StreamingPredictor, tmp_path: Path
) -> None:
    for shot in ("shot_a", "shot_b"):
        (tmp_path / shot).mkdir()
        for number in (1, 2):
            write_png(tmp_path / shot / f"frame_{number:04d}.png", ramp_frame(number))
    specs = [str(tmp_path / "shot_a" / "frame_%04d.png"), str(tmp_path / "shot_b/frame_*.png")]
    run = runner(predictor, tmp_path / "out", ["png16"])

    report = run.run(specs)

    assert [r.status for r in report.results] == ["done", "failed"]
    assert report.results[0].name == "frame" and report.results[0].frames == 2
    assert f"{specs[1]} would write to {tmp_path / 'out' / 'frame'}, like {specs[0]}" in (
        report.results[1].reason
    )
    written = sorted(p.name for p in (tmp_path / "out" / "frame" / "png16").iterdir())
    assert written == ["000001.png", "000002.png"]


def test_ctrl_c_ends_a_live_input_as_a_success_with_finalised_outputs(
    predictor: StreamingPredictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def endless():  # a camera: frames until someone stops it
        index = 0
        while True:
            yield ramp_frame(index)
            index += 1

    def open_camera(spec: str, fps: Fraction | None = None, *, queue_size: int = 8):
        info = VideoInfo("video0", spec, WIDTH, HEIGHT, Fraction(30), None, live=True)
        return BufferedSource(info, endless(), queue_size)

    predict = StreamingPredictor.predict

    def predict_then_press_ctrl_c_at_the_third(self, rgb: np.ndarray) -> np.ndarray:
        depth = predict(self, rgb)
        if self.frames_seen == 3:
            signal.raise_signal(signal.SIGINT)
        return depth

    monkeypatch.setattr(batch, "open_source", open_camera)
    monkeypatch.setattr(StreamingPredictor, "predict", predict_then_press_ctrl_c_at_the_third)
    run = runner(predictor, tmp_path / "out", ["exr", "mp4"])

    report = run.run(["/dev/video0"])

    (result,) = report.results
    assert (result.status, result.frames, result.live, report.exit_code) == ("done", 3, True, 0)
    assert result.reason == "live input stopped by Ctrl-C after 3 frame(s)"
    assert re.fullmatch(r"video0_\d{8}-\d{6}", result.name)
    folder = tmp_path / "out" / result.name
    assert (folder / "units.json").is_file() and (folder / f"{result.name}_depth.mp4").is_file()
    assert len(list((folder / "exr").iterdir())) == 3
    assert set(result.latency_ms) == {"mean", "median", "p95"}
    assert "latency median" in printed(run)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_progress_shows_frames_of_the_total_and_live_latency() -> None:
    console = Console(file=io.StringIO(), width=150, force_terminal=True, color_system=None)
    progress = BatchProgress(console, total=2, enabled=True)
    progress.start_input("clip", 12, latency=True)
    progress.frame(FrameReport(index=4, latency_ms=41.6, computed=5, dropped=2, expected=12))
    line = progress.bars.make_tasks_table(progress.bars.tasks)
    console.print(line)
    text = console.file.getvalue()
    assert "inputs" in text and "0/2" in text
    assert "clip" in text and "7/12" in text and "latency 42 ms, 2 dropped" in text
    progress.finish_input(InputResult("clip.mp4", "skipped", name="clip"))
    assert "clip: skipped (done)" in console.file.getvalue()
    assert [task.description for task in progress.bars.tasks] == ["inputs"]
