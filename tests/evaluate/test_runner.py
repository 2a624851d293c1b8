"""Per-video cache (resume), parallel workers giving the numbers of one, failures named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from flashdepth.evaluate import EvaluationError, runner
from flashdepth.evaluate.ground_truth import list_videos
from flashdepth.evaluate.predictions import PredictionOptions, plan_method
from flashdepth.evaluate.runner import VideoJob, run_jobs
from flashdepth.evaluate.scoring import ProtocolSetting
from tests.evaluate.fakes import known_depth, write_frames, write_shards

SETTINGS = (ProtocolSetting("flashdepth", 70.0), ProtocolSetting("vda", 70.0))


@pytest.fixture
def jobs(tmp_path: Path) -> list[VideoJob]:
    """Three synthetic videos and noisy inverse-depth predictions of them, as npy files."""
    videos = [("synthetic", f"scene_{i}", known_depth(i), list(range(5))) for i in range(3)]
    gt = write_shards(tmp_path / "gt", videos)
    rng = np.random.default_rng(0)
    for _, scene, depth, _ in videos:
        inverse = np.nan_to_num(100 / depth, nan=5.0) * rng.uniform(0.9, 1.1, depth.shape)
        write_frames(tmp_path / "pred" / scene, inverse.astype(np.float32), "npy")
    return _jobs(gt, tmp_path / "pred", tmp_path / "out")


def _jobs(gt: str, predictions: Path, out: Path) -> list[VideoJob]:
    videos = list_videos(gt)
    plans = plan_method("m", predictions, videos, PredictionOptions("inverse-depth"))
    return [
        VideoJob("m", video, plan, SETTINGS, 2, out / "videos" / "m" / f"{video.key}.json")
        for video, plan in zip(videos, plans, strict=True)
    ]


def test_a_rerun_skips_scored_videos_and_rescores_changed_ones(jobs, monkeypatch) -> None:
    first = run_jobs(jobs, log=lambda line: None)
    assert [r["scene"] for r in first] == ["scene_0", "scene_1", "scene_2"]
    assert all(job.cache.is_file() for job in jobs)
    scored, lines = [], []
    real_run_job = runner.run_job

    def counting(job: VideoJob) -> dict:
        scored.append(job.video.scene)
        return real_run_job(job)

    monkeypatch.setattr(runner, "run_job", counting)
    assert run_jobs(jobs, log=lines.append) == first
    assert scored == [] and lines == ["3 of 3 videos already scored (cached under their --out)"]
    changed = jobs[1].prediction.files[3]
    np.save(changed, np.load(changed) * 1.5)
    os.utime(changed, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    again = run_jobs(jobs, log=lines.append)
    assert scored == ["scene_1"]
    assert again[0] == first[0] and again[2] == first[2]
    assert (
        again[1]["protocols"]["flashdepth"]["abs_rel"]
        != first[1]["protocols"]["flashdepth"]["abs_rel"]
    )


def test_two_workers_give_the_numbers_of_one(jobs, tmp_path) -> None:
    one = run_jobs(jobs, workers=1, log=lambda line: None)
    parallel_jobs = [
        VideoJob(
            j.method,
            j.video,
            j.prediction,
            j.settings,
            j.chunk_frames,
            tmp_path / "parallel" / j.cache.name,
        )  # fmt: skip
        for j in jobs
    ]
    two = run_jobs(parallel_jobs, workers=2, log=lambda line: None)
    assert [r["protocols"] for r in two] == [r["protocols"] for r in one]
    assert [r["key"] for r in two] == [r["key"] for r in one]  # in job order


def test_an_unreadable_frame_names_method_video_and_frame(jobs) -> None:
    broken = jobs[2].prediction.files[4]
    broken.write_bytes(b"not an array")
    with pytest.raises(EvaluationError) as error:
        run_jobs(jobs, log=lambda line: None)
    message = str(error.value)
    assert "method 'm', video synthetic/scene_2" in message and "frame 4" in message
    assert str(broken) in message
    assert jobs[0].cache.is_file() and jobs[1].cache.is_file()  # kept for the rerun
    assert not jobs[2].cache.exists()
