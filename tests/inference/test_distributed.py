"""Tests of ``flashdepth stream --devices N``: the plan, the probe, the merged report, two ranks.

A real two-process CPU run (gloo) must give the outputs of a single process, bit for bit. The
two-process run launches ``flashdepth stream ... --devices 2`` in a subprocess, as a user
would (through :mod:`tests.inference.tiny_stream`, which builds the preset at the tiny test
size): Lightning Fabric then runs the same command again for rank 1.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
import torch
from torch import nn

from flashdepth.inference.batch import InputResult
from flashdepth.inference.command import main
from flashdepth.inference.distributed import RankReport, merge_reports, plan_shares, probe_frames
from tests.cli_overrides import tiny_preset
from tests.inference.media import ramp_frame, write_png, write_video

ROOT = Path(__file__).resolve().parents[2]
#: Frames of the four videos of the two-process run.
LENGTHS = {"a": 9, "b": 6, "c": 4, "d": 3}


def test_the_plan_puts_the_longest_first_on_the_least_loaded_rank_then_unknowns_round_robin():
    frames = [30, 12, None, 10, 9, None, 7, None]
    shares = plan_shares(frames, 3)
    # 30 -> r0; 12 -> r1; 10 -> r2; 9 -> r2 (19); 7 -> r1 (19); unknowns from r1, r2, r0
    assert shares == [[0, 7], [1, 2, 6], [3, 4, 5]]
    assert plan_shares(frames, 1) == [list(range(len(frames)))]
    assert plan_shares([5, 5], 4) == [[0], [1], [], []]


def test_every_input_is_in_exactly_one_share_and_loads_differ_by_at_most_the_longest() -> None:
    rng = random.Random(0)
    for _ in range(200):
        frames = [rng.choice([None, rng.randint(1, 500)]) for _ in range(rng.randint(0, 30))]
        world = rng.randint(1, 8)
        shares = plan_shares(frames, world)
        assert sorted(index for share in shares for index in share) == list(range(len(frames)))
        loads = [sum(frames[index] or 0 for index in share) for share in shares]
        longest = max((count for count in frames if count is not None), default=0)
        assert max(loads) - min(loads) <= longest


def test_probe_reads_the_header_of_videos_and_counts_sequences(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=5)
    shot = tmp_path / "shot"
    shot.mkdir()
    for index in range(1, 4):
        write_png(shot / f"shot.{index:04d}.png", ramp_frame(index))
    (tmp_path / "notes.mp4").write_text("not a video")
    assert probe_frames(str(video)) == 5
    assert probe_frames(str(shot)) == 3
    assert probe_frames(str(tmp_path / "notes.mp4")) is None
    assert probe_frames("rtsp://camera.invalid/stream") is None  # never opened


def test_the_merged_report_keeps_the_input_order_and_records_the_plan(tmp_path: Path) -> None:
    inputs = ["a.mp4", "b.mp4", "c.mp4"]
    ranks = [
        RankReport(0, "cpu", [0, 2], [InputResult("a.mp4", "done", frames=8)] * 2, False),
        RankReport(1, "cpu", [1], [InputResult("b.mp4", "failed", reason="broken")], True),
    ]
    report = merge_reports(tmp_path, inputs, [8, None, 2], ranks, {"model": "m"})
    assert [result.status for result in report.results] == ["done", "failed", "done"]
    assert report.interrupted and report.exit_code == 130
    assert report.about["world_size"] == 2 and report.about["model"] == "m"
    assert [rank["planned_frames"] for rank in report.about["ranks"]] == [10, 0]
    assert [rank["unknown_length"] for rank in report.about["ranks"]] == [0, 1]


def read_exr(path: Path) -> np.ndarray:
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        return exr.channels()["Z"].pixels


def test_two_cpu_processes_stream_every_video_once_and_equal_one_process(
    tmp_path: Path, tiny_presets: None
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, frames in LENGTHS.items():
        write_video(videos / f"{name}.mp4", frames=frames)
    model = tiny_preset("flashdepth-s-gru")
    nn.init.normal_(model.temporal_out[1].weight, std=0.5)  # the carried state matters
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    common = ["--model", "flashdepth-s-gru", "--weights", str(tmp_path / "weights.pth")]
    common += ["--resolution", "28", "--formats", "exr", "--no-progress"]

    command = [sys.executable, "-m", "tests.inference.tiny_stream", str(videos), "--out"]
    command += [str(tmp_path / "two"), "--devices", "2", "--accelerator", "cpu", *common]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    torch.set_num_threads(1)  # as each of the two processes
    assert main([str(videos), "--out", str(tmp_path / "one"), *common]) == 0

    report = json.loads((tmp_path / "two" / "stream_report.json").read_text())
    assert report["world_size"] == 2
    shares = [[Path(spec).stem for spec in rank["inputs"]] for rank in report["ranks"]]
    assert shares == [["a", "d"], ["b", "c"]]  # 9 -> r0, 6 -> r1, 4 -> r1, 3 -> r0
    assert [rank["planned_frames"] for rank in report["ranks"]] == [12, 10]
    assert [(result["name"], result["status"]) for result in report["inputs"]] == [
        (name, "done") for name in LENGTHS
    ]
    assert [result["frames"] for result in report["inputs"]] == list(LENGTHS.values())
    assert report["totals"]["done"] == 4 and report["totals"]["frames"] == sum(LENGTHS.values())
    assert done.stdout.count("flashdepth stream") == 1  # one summary, printed by rank 0
    for name, frames in LENGTHS.items():
        exr = sorted((tmp_path / "two" / name / "exr").glob("*.exr"))
        assert [path.name for path in exr] == [f"{index:06d}.exr" for index in range(frames)]
        units = json.loads((tmp_path / "two" / name / "units.json").read_text())
        assert units["video"]["frames"] == frames
        for path in exr:
            np.testing.assert_array_equal(
                read_exr(path), read_exr(tmp_path / "one" / name / "exr" / path.name)
            )


@pytest.mark.parametrize(
    "extra",
    [["--accelerator", "cpu"], ["--num-nodes", "2"], ["--devices", "2", "--device", "cpu"]],
)
def test_flags_of_many_processes_without_their_partner_are_usage_errors(
    tmp_path: Path, extra: list[str]
) -> None:
    video = write_video(tmp_path / "clip.mp4", frames=2)
    assert main([str(video), "--out", str(tmp_path / "out"), *extra]) == 2
