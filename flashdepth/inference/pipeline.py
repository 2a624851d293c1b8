"""One video through the predictor into the sinks, with decoding, model and encoding overlapped.

Three threads work at once: the source decodes ahead on its own thread (bounded buffer),
the model runs in the calling thread, and a writer thread feeds every sink from a bounded
queue, so memory stays flat and the slowest stage sets the pace.

How a run ends:

* **success**: every sink is closed (temporary names become final), then ``units.json`` is
  written: the video is complete (:func:`~flashdepth.inference.sinks.completed`);
* **the input ended early** (a cut-short file, see :mod:`flashdepth.inference.sources`): the
  frames decoded are written, the sinks are aborted (partial mp4s stay playable under their
  ``.partial.mp4`` names, per-frame files are valid), no ``units.json``, and the result says
  ``ended_early`` so the caller reports "ended after N of M frames"; nothing is raised;
* **an error or KeyboardInterrupt** (in decoding, the model, a sink or ``on_frame``): reading
  stops, the frames already computed are written (unless a sink failed), the sinks are
  aborted, no ``units.json``, and the exception is re-raised.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flashdepth.inference.frames import DepthSink, Frame
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.inference.sinks import FormatSink, write_units
from flashdepth.inference.sources import BufferedSource

#: Latencies kept for the median and 95th percentile (the mean covers every frame).
LATENCY_WINDOW = 10_000
_log = logging.getLogger(__name__)


@dataclass
class FrameReport:
    """Progress after one frame.

    Attributes:
        index: The frame's index.
        latency_ms: Milliseconds from the frame leaving the decoder to its depth being ready.
        computed: Frames through the model so far (this one included).
        dropped: Frames skipped so far to stay live.
        expected: Frames the input announced (``None``: unknown or live).
    """

    index: int
    latency_ms: float
    computed: int
    dropped: int
    expected: int | None


@dataclass
class StreamResult:
    """How one video went.

    Attributes:
        name: The video's output name.
        frames_written: Frames written by every sink.
        frames_dropped: Frames skipped to stay live (``drop_frames``).
        seconds: Wall time of the run.
        latency_ms_mean: Mean per-frame latency (all frames).
        latency_ms_median: Median latency (last :data:`LATENCY_WINDOW` frames).
        latency_ms_p95: 95th percentile latency (last :data:`LATENCY_WINDOW` frames).
        ended_early: The input ended before the frame count it announced.
        expected_frames: Frames the input announced (``None``: unknown or live).
        complete: ``units.json`` was written.
    """

    name: str
    frames_written: int
    frames_dropped: int
    seconds: float
    latency_ms_mean: float
    latency_ms_median: float
    latency_ms_p95: float
    ended_early: bool
    expected_frames: int | None
    complete: bool


class _Writer:
    """Writer thread: every queued ``(frame, depth)`` to every sink, in order.

    After a sink error it discards what is queued (so producers never block) and the error
    is raised in the calling thread by the next :meth:`put` or by :meth:`finish`.
    """

    def __init__(self, sinks: Sequence[DepthSink], queue_size: int) -> None:
        self.sinks = sinks
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.error: BaseException | None = None
        self.written = 0
        self.depth_size: tuple[int, int] | None = None
        self.thread = threading.Thread(target=self._run, name="write depth", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is not None:
                continue
            frame, depth = item
            try:
                for sink in self.sinks:
                    sink.write(frame, depth)
            except BaseException as error:  # raised in the calling thread
                self.error = error
                continue
            self.written += 1
            self.depth_size = (int(depth.shape[0]), int(depth.shape[1]))

    def _enqueue(self, item: tuple[Frame, np.ndarray] | None) -> None:
        while True:
            if self.error is not None and item is not None:
                raise self.error
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def put(self, frame: Frame, depth: np.ndarray) -> None:
        """Queue one frame (waits while the queue is full); raises a sink's error."""
        self._enqueue((frame, depth))

    def finish(self, raise_error: bool = True) -> None:
        """Write everything queued and stop the thread.

        Then raise a sink's error, if any and ``raise_error``.
        """
        self._enqueue(None)
        self.thread.join()
        if self.error is not None and raise_error:
            raise self.error


def _abort(sinks: Sequence[DepthSink]) -> None:
    """Abort every sink; a failing abort is logged, never raised over the original error."""
    for sink in sinks:
        try:
            sink.abort()
        except Exception as error:
            _log.warning("aborting %s failed: %s", type(sink).__name__, error)


def _close(sinks: Sequence[DepthSink]) -> None:
    """Close every sink; if one fails, abort it and the rest, then raise."""
    for position, sink in enumerate(sinks):
        try:
            sink.close()
        except BaseException:
            _abort(sinks[position:])
            raise


def run_stream(
    source: BufferedSource,
    predictor: StreamingPredictor,
    sinks: Sequence[FormatSink],
    out_dir: Path,
    *,
    queue_size: int = 8,
    drop_frames: bool = False,
    on_frame: Callable[[FrameReport], None] | None = None,
) -> StreamResult:
    """Stream one video: decode ahead, predict here, write behind (see the module docstring).

    Args:
        source: The video (closed by this function).
        predictor: Reset at the start (a new video).
        sinks: Opened, written, then closed or aborted by this function; their
            ``file_format`` names are listed in ``units.json``.
        out_dir: Root of the outputs (``{out_dir}/{name}/...``).
        queue_size: Frames waiting for the writer at most.
        drop_frames: Skip a frame when a newer one is already decoded (live input: the
            output stays live; drops are counted).
        on_frame: Called after each computed frame (progress, latency); an exception it
            raises, KeyboardInterrupt included, ends the run like any error.

    Returns:
        Counts, wall time, latency statistics and how the input ended.
    """
    info = source.info
    predictor.reset()
    latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
    latency_sum, computed, dropped = 0.0, 0, 0
    opened: list[DepthSink] = []
    start = time.perf_counter()
    try:
        for sink in sinks:
            try:
                sink.open(info, Path(out_dir))
            except OSError as error:
                raise OSError(
                    f"cannot write the {sink.file_format} output of {info.name} under "
                    f"{out_dir} ({error}); give an output folder you can write to"
                ) from error
            opened.append(sink)
        writer = _Writer(sinks, queue_size)
        try:
            for frame in source:
                if drop_frames and source.pending() > 0:
                    dropped += 1
                    continue
                depth = predictor.predict(frame.rgb)
                ready = source.last_ready_s if source.last_ready_s is not None else start
                latency_ms = (time.perf_counter() - ready) * 1000.0
                latencies.append(latency_ms)
                latency_sum += latency_ms
                computed += 1
                writer.put(frame, depth)
                if on_frame is not None:
                    expected = info.num_frames
                    on_frame(FrameReport(frame.index, latency_ms, computed, dropped, expected))
        except BaseException:
            source.close()
            writer.finish(raise_error=False)  # what was computed is written, then aborted
            raise
        source.close()
        writer.finish()
    except BaseException:
        source.close()
        _abort(opened)
        raise
    if source.ended_early:
        _abort(sinks)
    else:
        _close(sinks)
        write_units(
            Path(out_dir) / info.name,
            info,
            predictor.describe(),
            [sink.file_format for sink in sinks],
            frames=writer.written,
            depth_size=writer.depth_size,
        )
    window = np.asarray(latencies) if latencies else np.zeros(1)
    return StreamResult(
        name=info.name,
        frames_written=writer.written,
        frames_dropped=dropped,
        seconds=time.perf_counter() - start,
        latency_ms_mean=latency_sum / max(computed, 1),
        latency_ms_median=float(np.median(window)),
        latency_ms_p95=float(np.percentile(window, 95)),
        ended_early=source.ended_early,
        expected_frames=info.num_frames,
        complete=not source.ended_early,
    )
