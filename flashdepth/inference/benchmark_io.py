"""``flashdepth benchmark stream-io``: the stream pipeline against the bare model; host memory.

Three measurements, side by side in one process, on H.264 mp4s of a built-in synthetic scene
(:func:`datamodules.synthetic.render_clip`: ``--scene-frames`` rendered frames played forward
then backward until the video is long enough):

throughput
    ``--throughput-frames`` frames (default 300) through
    :func:`~flashdepth.inference.pipeline.run_stream`, as ``flashdepth stream`` runs them
    (decoding thread, :class:`~flashdepth.inference.StreamingPredictor`, writing thread into
    the ``--formats`` sinks; frames/s of its wall time), against the same predictor on the
    same frames decoded into memory beforehand, timed around the predictor calls only (the
    bare model: preprocessing, ``step``, resize back). ``pipeline / bare`` is the share of
    the model's rate the pipeline keeps (target ≥ 0.9: decoding and encoding hidden behind
    the model). Bare and pipeline alternate for ``--rounds`` rounds, so drift of the machine
    hits both; each reports its median round. Five untimed frames warm the model up first.
memory, streaming
    One video of ``--frames`` frames (default 10,000) through the pipeline; the resident set
    size (RSS) of the process before, after ``--early`` frames (default 100) and after the
    last. Constant memory shows as no growth from the early frame to the last.
memory, preloading
    The released FlashDepth code's approach on the same video: decode every frame into a
    list, then predict every frame keeping every prediction; RSS before, after decoding,
    after ``--early`` predicted frames and after the last.

Outputs go to a temporary folder (``--work-dir`` to keep them); the memory run writes every
frame in ``--formats``, so give it room (about 80 kB per EXR frame at 252x140). A tiny model
at a small network resolution (the defaults: FlashDepth-S at 28 px) streams 10,000 frames in
a few minutes on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

import flashdepth
from datamodules.synthetic import render_clip
from flashdepth.benchmark import format_table, resident_memory_mb
from flashdepth.inference.command import UsageError, parse_resolution, positive_int, resolve_device
from flashdepth.inference.pipeline import FrameReport, run_stream
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.inference.sinks import make_sinks
from flashdepth.inference.sources import open_source

#: Untimed frames before any measurement.
WARMUP_FRAMES = 5
#: Frame rate of the benchmark videos.
VIDEO_FPS = Fraction(30)


def ping_pong(count: int, length: int) -> Iterator[int]:
    """Indices ``0 … count-1 … 1, 0 …`` (forward then backward) for ``length`` frames."""
    period = max(1, 2 * count - 2)
    for position in range(length):
        phase = position % period
        yield phase if phase < count else period - phase


def write_scene_video(path: Path, scene: np.ndarray, frames: int) -> Path:
    """Encode ``frames`` frames of ``scene`` as an H.264 mp4 at 30 frames/s.

    ``scene`` is ``(S, H, W, 3)`` uint8, played forward and back, with even sides: the
    encoder's yuv420p needs them.
    """
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.height, stream.width = scene.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for pts, index in enumerate(ping_pong(len(scene), frames)):
            picture = av.VideoFrame.from_ndarray(scene[index], format="rgb24")
            picture.pts = pts
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return path


def decode_all(path: Path) -> list[np.ndarray]:
    """Every frame of a video as ``(H, W, 3)`` uint8, held in memory (the preloading way)."""
    with open_source(str(path)) as source:
        return [frame.rgb for frame in source]


def time_bare(predictor: StreamingPredictor, frames: list[np.ndarray]) -> float:
    """Frames/s of the predictor alone on frames already in memory (model calls timed)."""
    predictor.reset()
    spent = 0.0
    for rgb in frames:
        start = time.perf_counter()
        predictor.predict(rgb)
        spent += time.perf_counter() - start
    return len(frames) / spent


def time_pipeline(
    predictor: StreamingPredictor, video: Path, formats: list[str], out: Path
) -> float:
    """Frames/s of ``run_stream`` on ``video`` (decode, model, write), from its wall time."""
    result = run_stream(open_source(str(video)), predictor, make_sinks(formats), out)
    return result.frames_written / result.seconds


def measure_streaming_memory(
    predictor: StreamingPredictor, video: Path, formats: list[str], out: Path, early: int
) -> dict[str, float]:
    """RSS (MiB) before, after ``early`` frames and after the last frame of ``video`` streamed."""
    rss = {"before": resident_memory_mb()}

    def on_frame(report: FrameReport) -> None:
        if report.computed == early:
            rss["early"] = resident_memory_mb()

    result = run_stream(
        open_source(str(video)), predictor, make_sinks(formats), out, on_frame=on_frame
    )
    rss["end"] = resident_memory_mb()
    rss["frames"] = result.frames_written
    return rss


def measure_preloading_memory(
    predictor: StreamingPredictor, video: Path, early: int
) -> dict[str, float]:
    """RSS (MiB) of the preloading approach, which keeps every frame and prediction.

    Measured before, after decoding every frame, after ``early`` predictions and after the
    last.
    """
    rss = {"before": resident_memory_mb()}
    frames = decode_all(video)
    rss["decoded"] = resident_memory_mb()
    predictor.reset()
    predictions = []
    for rgb in frames:
        predictions.append(predictor.predict(rgb))
        if len(predictions) == early:
            rss["early"] = resident_memory_mb()
    rss["end"] = resident_memory_mb()
    rss["frames"] = len(predictions)
    return rss


def benchmark_stream_io(
    predictor: StreamingPredictor,
    work: Path,
    size: tuple[int, int] = (140, 252),
    frames: int = 10_000,
    throughput_frames: int = 300,
    early: int = 100,
    rounds: int = 3,
    formats: tuple[str, ...] = ("exr", "mp4"),
    scene_frames: int = 60,
) -> dict[str, Any]:
    """Run the three measurements of the module docstring.

    Args:
        predictor: The model to stream, ready on its device.
        work: Folder for the videos and the outputs.
        size: ``(H, W)`` of the videos, even sides.
        frames: Length of the memory run's video.
        throughput_frames: Length of the throughput video.
        early: Frame after which the early RSS is read (below ``frames``).
        rounds: Alternating bare/pipeline rounds of the throughput measurement.
        formats: Output formats of the pipeline.
        scene_frames: Synthetic frames rendered (then played forward and back).

    Returns:
        ``bare_fps`` and ``pipeline_fps`` (medians), ``ratio`` (their quotient), the per-round
        rates, ``throughput_frames``, and the ``streaming`` and ``preloading`` RSS readings in
        MiB (with the frames each covered).
    """
    if not 0 < early < frames:
        raise ValueError(f"--early must be between 1 and --frames - 1 ({frames - 1}), got {early}")
    scene = render_clip(0, scene_frames, *size).frames  # (S, H, W, 3) uint8
    short = write_scene_video(work / "throughput.mp4", scene, throughput_frames)
    long = write_scene_video(work / "memory.mp4", scene, frames)
    decoded = decode_all(short)
    predictor.reset()
    for rgb in decoded[:WARMUP_FRAMES]:
        predictor.predict(rgb)
    bare, pipeline = [], []
    for round_ in range(rounds):
        bare.append(time_bare(predictor, decoded))
        pipeline.append(time_pipeline(predictor, short, list(formats), work / f"round{round_}"))
    del decoded
    bare_fps, pipeline_fps = statistics.median(bare), statistics.median(pipeline)
    streaming = measure_streaming_memory(predictor, long, list(formats), work / "memory", early)
    preloading = measure_preloading_memory(predictor, long, early)
    return {
        "throughput_frames": throughput_frames,
        "bare_fps": bare_fps,
        "pipeline_fps": pipeline_fps,
        "ratio": pipeline_fps / bare_fps,
        "bare_rounds": bare,
        "pipeline_rounds": pipeline,
        "streaming": streaming,
        "preloading": preloading,
    }


def format_report(results: dict[str, Any], early: int, heading: str) -> str:
    """The printed tables: throughput, then host memory."""
    streaming, preloading = results["streaming"], results["preloading"]
    last = int(streaming["frames"])
    throughput = [
        ("  bare model (frames decoded beforehand)", f"{results['bare_fps']:.2f} frames/s"),
        ("  stream pipeline (decode, model, write)", f"{results['pipeline_fps']:.2f} frames/s"),
        ("  pipeline / bare", f"{results['ratio']:.2f} (target >= 0.9)"),
    ]
    memory = [
        ("  streaming: before", f"{streaming['before']:.1f} MiB"),
        (f"  streaming: after {early} frames", f"{streaming['early']:.1f} MiB"),
        (f"  streaming: after {last} frames", f"{streaming['end']:.1f} MiB"),
        (
            f"  streaming: growth from frame {early} to {last}",
            f"{streaming['end'] - streaming['early']:+.1f} MiB",
        ),
        ("  preloading: before", f"{preloading['before']:.1f} MiB"),
        (f"  preloading: after decoding {last} frames", f"{preloading['decoded']:.1f} MiB"),
        (f"  preloading: after {early} frames", f"{preloading['early']:.1f} MiB"),
        (f"  preloading: after {last} frames", f"{preloading['end']:.1f} MiB"),
        (
            f"  preloading: growth from frame {early} to {last}",
            f"{preloading['end'] - preloading['early']:+.1f} MiB",
        ),
    ]
    rounds = len(results["bare_rounds"])
    return "\n".join(
        [
            heading,
            f"throughput, {results['throughput_frames']} frames, median of {rounds} round(s)",
            format_table(throughput),
            f"host memory (RSS), one video of {last} frames",
            format_table(memory),
        ]
    )


def video_size(text: str) -> tuple[int, int]:
    """``"252x140"`` (width x height, even sides) -> ``(140, 252)`` as ``(H, W)``."""
    try:
        width, height = (int(side) for side in text.lower().split("x"))
    except ValueError:
        width = height = 0
    if width < 2 or height < 2 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a video size: give WIDTHxHEIGHT with even sides, e.g. 252x140"
        )
    return height, width


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``flashdepth benchmark stream-io``."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a renamed option must not silently match a longer one
        prog="flashdepth benchmark stream-io",
        description="End-to-end frames/s of the stream pipeline against the bare model, and "
        "host memory of a long stream against preloading the whole video.",
    )
    add = parser.add_argument
    add("--model", default="flashdepth-s", help="a preset (default: %(default)s)")
    add("--resolution", type=parse_resolution, default=28, help="network short side (28)")
    add("--size", type=video_size, default="252x140", metavar="WxH", help="even sides (252x140)")
    add("--frames", type=positive_int, default=10_000, help="memory run length (10000)")
    add("--throughput-frames", type=positive_int, default=300, help="throughput video (300)")
    add("--early", type=positive_int, default=100, help="early RSS after this frame (100)")
    add("--rounds", type=positive_int, default=3, help="alternating throughput rounds (3)")
    add("--formats", default="exr,mp4", help="pipeline outputs (default: %(default)s)")
    add("--scene-frames", type=positive_int, default=60, help="rendered scene frames (60)")
    add("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto)")
    add("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype")
    add("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    add("--work-dir", type=Path, help="keep videos and outputs here (default: a temp folder)")
    return parser


def main(args: list[str] | None = None) -> int:
    """Run ``flashdepth benchmark stream-io`` and print its tables; return the exit status."""
    options = build_parser().parse_args(args)
    formats = tuple(name.strip() for name in options.formats.split(",") if name.strip())
    try:
        device = resolve_device(options.device)
        make_sinks(formats)
    except (UsageError, ValueError) as error:
        print(f"error: {error}")
        return 2
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    model = flashdepth.create_model(options.model)  # random weights: speed and memory only
    predictor = StreamingPredictor(model, options.resolution, device=device, dtype=options.dtype)
    with tempfile.TemporaryDirectory(prefix="flashdepth-stream-io-") as temporary:
        work = options.work_dir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        results = benchmark_stream_io(
            predictor,
            work,
            size=options.size,
            frames=options.frames,
            throughput_frames=options.throughput_frames,
            early=options.early,
            rounds=options.rounds,
            formats=formats,
            scene_frames=options.scene_frames,
        )
    height, width = options.size
    network = "x".join(str(side) for side in reversed(predictor.network_size or ()))
    heading = (
        f"flashdepth benchmark stream-io: {options.model}, network input {network} "
        f"(--resolution {options.resolution}), synthetic {width}x{height} H.264 mp4, "
        f"{device} {options.dtype}, formats {','.join(formats)}"
    )
    print(format_report(results, options.early, heading))
    return 0
