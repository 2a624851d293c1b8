"""Tests of ``flashdepth benchmark stream-io`` on a tiny run: its video, and its table.

The table's numbers must agree with each other; no timing is asserted (the machine decides
those).
"""

from __future__ import annotations

import re
import statistics
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from flashdepth.inference.benchmark_io import (
    benchmark_stream_io,
    format_report,
    main,
    ping_pong,
    write_scene_video,
)
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.inference.sources import open_source
from tests.cli_overrides import tiny_preset

#: The tiny run: large frames (many bytes to preload) through a tiny network input.
HEIGHT, WIDTH, FRAMES, EARLY = 280, 504, 120, 10


def test_ping_pong_plays_the_scene_forward_then_backward() -> None:
    assert list(ping_pong(3, 8)) == [0, 1, 2, 1, 0, 1, 2, 1]
    assert list(ping_pong(1, 3)) == [0, 0, 0]


def test_the_scene_video_has_the_frames_rate_and_size_asked_for(tmp_path: Path) -> None:
    scene = np.stack([np.full((14, 28, 3), 40 * index, np.uint8) for index in range(3)])
    video = write_scene_video(tmp_path / "scene.mp4", scene, frames=7)
    with open_source(str(video)) as source:
        info = source.info
        levels = [round(float(frame.rgb.mean()) / 40) for frame in source]
    assert (info.num_frames, info.fps, info.width, info.height) == (7, Fraction(30), 28, 14)
    assert levels == [0, 1, 2, 1, 0, 1, 2]


def value(table: str, label: str) -> float:
    """The number printed after ``label`` in the table."""
    match = re.search(rf"^\s*{re.escape(label)}\s+([-+]?[\d.]+)", table, re.MULTILINE)
    assert match, f"no row {label!r} in\n{table}"
    return float(match.group(1))


def test_a_tiny_run_prints_consistent_rates_and_preloading_holds_the_video(tmp_path: Path) -> None:
    torch.set_num_threads(1)  # the decoding and writing threads get the other core
    predictor = StreamingPredictor(tiny_preset("flashdepth-s-none"), resolution=28)
    results = benchmark_stream_io(
        predictor,
        tmp_path,
        size=(HEIGHT, WIDTH),
        frames=FRAMES,
        throughput_frames=8,
        early=EARLY,
        rounds=3,
        formats=("exr", "mp4"),
        scene_frames=3,
    )
    assert results["bare_fps"] == statistics.median(results["bare_rounds"])
    assert results["pipeline_fps"] == statistics.median(results["pipeline_rounds"])
    assert results["ratio"] == results["pipeline_fps"] / results["bare_fps"]
    assert len(results["bare_rounds"]) == len(results["pipeline_rounds"]) == 3
    assert len(list((tmp_path / "memory" / "memory" / "exr").glob("*.exr"))) == FRAMES

    table = format_report(results, EARLY, "heading")
    bare = value(table, "bare model (frames decoded beforehand)")
    pipeline = value(table, "stream pipeline (decode, model, write)")
    assert value(table, "pipeline / bare") == pytest.approx(pipeline / bare, abs=0.01)
    assert value(table, "pipeline / bare") == round(results["ratio"], 2)
    assert "throughput, 8 frames, median of 3 round(s)" in table
    streaming, preloading = results["streaming"], results["preloading"]
    assert streaming["frames"] == preloading["frames"] == FRAMES
    for name, rss in (("streaming", streaming), ("preloading", preloading)):
        assert value(table, f"{name}: after {EARLY} frames") == round(rss["early"], 1)
        assert value(table, f"{name}: after {FRAMES} frames") == round(rss["end"], 1)
        growth = value(table, f"{name}: growth from frame {EARLY} to {FRAMES}")
        assert growth == pytest.approx(rss["end"] - rss["early"], abs=0.11)

    # How much RSS grows depends on what the allocator kept from earlier work in this process
    # (a long pytest run reuses freed pages), so the sizes themselves are benchmark figures
    # (README), not assertions.


@pytest.mark.parametrize("args", [["--formats", "gif"], ["--device", "tpu"]])
def test_bad_options_are_usage_errors(args: list[str], capsys: pytest.CaptureFixture) -> None:
    assert main(args) == 2
    assert "error:" in capsys.readouterr().out


def test_a_video_size_with_odd_sides_is_refused() -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--size", "251x140"])
    assert exit_.value.code == 2
