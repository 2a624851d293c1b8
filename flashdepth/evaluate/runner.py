"""Scoring (method, video) pairs: streamed, cached per video, in parallel processes.

Each pair is a :class:`VideoJob`. :func:`run_job` reads the ground truth and the prediction
files a chunk of frames at a time (bounded memory, see :mod:`~flashdepth.evaluate.scoring`),
turns each prediction into inverse depth, resizes it to the ground truth's size bilinearly
with ``align_corners=True`` (:func:`flashdepth.transforms.postprocess`: the resize of
``flashdepth test`` and of the FlashDepth paper's evaluation) and writes the video's result
to a JSON cache file (atomically). :func:`run_jobs` first loads every cache file whose
fingerprint still matches (ground-truth shard; prediction files by name, size and
modification time; units, protocols, caps, frame count, chunk size): a rerun skips finished
videos, and a change re-scores only the videos it touches. The others run in this process
or in a pool of worker processes (forked on Linux, spawned elsewhere). Every job runs
single-threaded, so the numbers do not depend on the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from flashdepth.evaluate import EvaluationError
from flashdepth.evaluate.ground_truth import GroundTruthVideo, frame_size, read_targets
from flashdepth.evaluate.predictions import PredictionVideo
from flashdepth.evaluate.scoring import ProtocolSetting, score_video
from flashdepth.inference.sinks import atomic_write
from flashdepth.transforms import postprocess

#: Version of the cached per-video results; bump when their content changes.
CACHE_VERSION = 1
#: Largest relative difference of aspect ratio between a prediction and its ground truth
#: that is taken for a resize (a crop or a transposed image is refused).
ASPECT_TOLERANCE = 0.1


@dataclass(frozen=True)
class VideoJob:
    """Score one method on one video.

    Attributes:
        method: Method name.
        video: The ground-truth video.
        prediction: Its prediction files.
        settings: Protocols and depth caps.
        chunk_frames: Frames read at once.
        cache: The JSON file the result is written to.
    """

    method: str
    video: GroundTruthVideo
    prediction: PredictionVideo
    settings: tuple[ProtocolSetting, ...]
    chunk_frames: int
    cache: Path

    def describe(self) -> str:
        """``method 'M', video dataset/scene (key K)`` for messages."""
        return f"method {self.method!r}, video {self.video.describe()}"


def fingerprint(job: VideoJob) -> str:
    """A hash of everything the job's numbers depend on (files by name, size and mtime)."""

    def stat(path: Path | str | None) -> list | None:
        if path is None:
            return None
        info = os.stat(path)
        return [str(Path(path).resolve()), info.st_size, info.st_mtime_ns]

    record = {
        "version": CACHE_VERSION,
        "ground_truth": [stat(job.video.entry.shard), job.video.key],
        "reader": repr(job.prediction.reader),
        "files": [stat(path) for path in job.prediction.files],
        "settings": [[s.protocol, s.max_depth] for s in job.settings],
        "chunk_frames": job.chunk_frames,
    }
    return hashlib.sha256(json.dumps(record).encode()).hexdigest()


def _prediction(job: VideoJob, t: int, size: tuple[int, int]) -> Tensor | None:
    """Frame ``t``'s prediction as (H, W) inverse depth at the ground truth's size."""
    path, reader = job.prediction.files[t], job.prediction.reader
    if path is None or reader is None:
        return None
    try:
        values = torch.from_numpy(reader.read(path))
    except EvaluationError as error:
        raise EvaluationError(f"{job.describe()}, frame {t}: {error}") from error
    height, width = values.shape
    aspect, gt_aspect = width / height, size[1] / size[0]
    if abs(aspect - gt_aspect) > ASPECT_TOLERANCE * gt_aspect:
        raise EvaluationError(
            f"{job.describe()}, frame {t}: prediction {path} is {width}x{height} but the "
            f"ground truth is {size[1]}x{size[0]}: aspect ratios differ by more than "
            f"{ASPECT_TOLERANCE:.0%}, which is a crop or a transposed image, not a resize. "
            "Write predictions of the whole frame"
        )
    return postprocess(values[None], size)[0]  # (1, h, w) -> (1, H, W) -> (H, W)


def _chunk_reader(job: VideoJob) -> Callable[[range], tuple[Tensor, Tensor, Tensor]]:
    """``frames -> (pred, gt_inverse_depth, valid)``; a missing frame has no valid pixel."""
    size = frame_size(job.video)

    def read(frames: range) -> tuple[Tensor, Tensor, Tensor]:
        gt, valid = read_targets(job.video, frames)
        if tuple(gt.shape[-2:]) != size:
            raise EvaluationError(
                f"ground truth of video {job.video.describe()} in {job.video.entry.shard}: "
                f"frames {frames.start}-{frames.stop - 1} are {tuple(gt.shape[-2:])}, frame 0 "
                f"is {size}; every frame of a video needs one size (re-create the shard)"
            )
        predictions = [_prediction(job, t, size) for t in frames]
        pred = torch.stack([torch.zeros(size) if p is None else p for p in predictions])
        present = torch.tensor([p is not None for p in predictions])
        return pred, gt, valid & present[:, None, None]  # (C,) -> (C, 1, 1) over (C, H, W)

    return read


def run_job(job: VideoJob) -> dict:
    """Score one job, write its cache file and return the record written.

    Raises:
        EvaluationError: Naming method, video and frame or file when something cannot be read.
    """
    started = time.perf_counter()
    frames = len(job.prediction.files)
    scores = score_video(_chunk_reader(job), frames, list(job.settings), job.chunk_frames)
    reader = job.prediction.reader
    first = next((path for path in job.prediction.files if path is not None), None)
    record = {
        "method": job.method,
        "key": job.video.key,
        "dataset": job.video.dataset,
        "scene": job.video.scene,
        "frame_ids": list(job.video.frame_ids[:frames]),
        "frames": frames,
        "frames_in_video": len(job.video.frame_ids),
        "missing_frames": job.prediction.missing_frames,
        "extra_files": job.prediction.extra_files,
        "numbering": job.prediction.numbering,
        "folder": str(job.prediction.folder),
        "format": None if reader is None else reader.file_format,
        "kind": None if reader is None else reader.kind,
        "prediction_size": None
        if first is None or reader is None
        else list(reader.read(first).shape),
        "seconds": round(time.perf_counter() - started, 3),
        "fingerprint": fingerprint(job),
        "protocols": scores,
    }
    job.cache.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1)
    atomic_write(job.cache, lambda temporary: temporary.write_text(text))
    return record


def cached(job: VideoJob) -> dict | None:
    """The job's cached record if its fingerprint still matches, else ``None``."""
    try:
        record = json.loads(job.cache.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("fingerprint") == fingerprint(job) else None


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch single-threaded inside (summation order independent of the machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _run_pending(jobs: list[VideoJob], workers: int) -> Iterator[dict]:
    """Records of the jobs as they finish, in this process or in ``workers`` processes."""
    if workers <= 1 or len(jobs) <= 1:
        with _single_thread():
            for job in jobs:
                yield run_job(job)
        return
    # fork on Linux: workers start at once with the modules loaded (this process runs no other
    # thread); spawn elsewhere (fork is unsafe on macOS and absent on Windows)
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with context.Pool(min(workers, len(jobs)), torch.set_num_threads, (1,)) as pool:
        yield from pool.imap_unordered(run_job, jobs)


def run_jobs(
    jobs: list[VideoJob], workers: int = 1, log: Callable[[str], None] = print
) -> list[dict]:
    """Every job's record, from its cache or scored now, in job order.

    Args:
        jobs: The (method, video) pairs.
        workers: Processes scoring at once (1: this process).
        log: Receives one progress line per video.

    Raises:
        EvaluationError: From the first job that fails (the finished ones stay cached).
    """
    records: dict[tuple[str, str], dict] = {}
    pending = []
    for job in jobs:
        record = cached(job)
        if record is None:
            pending.append(job)
        else:
            records[job.method, job.video.key] = record
    if records:
        log(f"{len(records)} of {len(jobs)} videos already scored (cached under their --out)")
    for done, record in enumerate(_run_pending(pending, workers), start=1):
        records[record["method"], record["key"]] = record
        log(
            f"[{done}/{len(pending)}] {record['method']}: {record['dataset']}/{record['scene']} "
            f"({record['frames']} frames, {record['seconds']:.1f} s)"
        )
    return [records[job.method, job.video.key] for job in jobs]
