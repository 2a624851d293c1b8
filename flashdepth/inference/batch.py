"""Many videos through one predictor, one after the other: the runner behind ``flashdepth stream``.

:class:`BatchRunner` takes input specs (what :func:`~flashdepth.inference.sources.open_source`
opens: video files, image-sequence folders or patterns, cameras, URLs) and, for each:

* **skips** it when its outputs are complete in every requested format
  (:func:`~flashdepth.inference.sinks.completed`: ``{out}/{name}/units.json``, written last);
* otherwise streams it with :func:`~flashdepth.inference.pipeline.run_stream` into fresh sinks
  (temporary names, renamed when the video is complete);
* **records a failure and continues**: an input that cannot be opened, a decoder error, any
  error of the model or a sink, and a video that ends before the frame count of its header
  ("ended after N of M frames": the frames before are written, the video is not complete).

A **Ctrl-C** stops the batch: the pipeline aborts the sinks (nothing incomplete takes a final
name), the input is recorded as ``interrupted`` and the rest as ``not started``; rerunning the
same command resumes (finished videos are skipped, the interrupted one starts again).

**Live input** (a camera or a stream without a frame count) has no end and no resume. The
first Ctrl-C ends it as a success: what was captured is finalised (mp4 renamed,
``units.json`` written) and the batch goes on; a second Ctrl-C interrupts as above. Each live
run writes to its own folder, ``{name}_{YYYYmmdd-HHMMSS}``, so a capture never overwrites
an earlier one.

``{out}/stream_report.json`` is rewritten after every input (per input: status, frames,
seconds, reason), so even a killed run leaves an account of what it finished.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flashdepth.inference.frames import Frame
from flashdepth.inference.pipeline import FrameReport, run_stream
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.inference.sinks import atomic_write, completed, make_sinks
from flashdepth.inference.sources import BufferedSource, SourceError, open_source

#: The report written beside the outputs.
REPORT_FILE = "stream_report.json"
#: Statuses of an input, in the order the summary lists them.
STATUSES = ("done", "skipped", "failed", "interrupted", "not started")


@dataclass
class InputResult:
    """How one input went.

    Attributes:
        input: The spec as given to the runner.
        status: One of :data:`STATUSES`.
        name: Output folder name (``{out}/{name}``), once the input was opened.
        frames: Frames through the model and written.
        expected_frames: Frames the input announced (``None``: unknown or live).
        dropped: Frames skipped to stay live (``drop_frames``).
        seconds: Wall time spent streaming it.
        reason: Why it failed, was interrupted or stopped early.
        live: A camera or stream without an end.
        latency_ms: Mean, median and 95th percentile per-frame latency, once streamed.
    """

    input: str
    status: str = "not started"
    name: str | None = None
    frames: int = 0
    expected_frames: int | None = None
    dropped: int = 0
    seconds: float = 0.0
    reason: str | None = None
    live: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """Frames per second while streaming it (0 when nothing ran)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class BatchReport:
    """The outcome of a batch.

    Attributes:
        out_dir: Root of the outputs.
        results: One entry per input, in order.
        interrupted: The batch was stopped by Ctrl-C.
        about: What ran (model, weights, formats, ...), recorded in the report file.
    """

    out_dir: Path
    results: list[InputResult]
    interrupted: bool = False
    about: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        """Inputs with ``status``."""
        return sum(result.status == status for result in self.results)

    @property
    def frames(self) -> int:
        """Frames written by this run, over all inputs."""
        return sum(result.frames for result in self.results)

    @property
    def seconds(self) -> float:
        """Seconds spent streaming, over all inputs."""
        return sum(result.seconds for result in self.results)

    @property
    def mean_fps(self) -> float:
        """Frames written per second of streaming (0 when nothing ran)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 1 when an input failed, 0 when all are done or skipped."""
        if self.interrupted:
            return 130
        return 1 if self.count("failed") else 0

    def write(self) -> Path:
        """Write ``{out}/stream_report.json`` atomically; return its path."""
        totals: dict[str, Any] = {status: self.count(status) for status in STATUSES}
        totals.update(
            frames=self.frames,
            seconds=round(self.seconds, 3),
            mean_fps=round(self.mean_fps, 3),
            exit_code=self.exit_code,
        )
        inputs = [{**asdict(result), "fps": round(result.fps, 3)} for result in self.results]
        record = {**self.about, "totals": totals, "inputs": inputs}
        path = self.out_dir / REPORT_FILE
        atomic_write(path, lambda temporary: temporary.write_text(json.dumps(record, indent=2)))
        return path


class _LiveStop:
    """While active, the first Ctrl-C sets :attr:`requested` instead of interrupting.

    The handler then steps aside, so a second Ctrl-C raises KeyboardInterrupt as usual.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous: Any = None

    def _handle(self, signum: int, frame: object) -> None:
        self.requested.set()
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> _LiveStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _UntilStopped:
    """A source whose frames end when ``stop`` is set (the rest of the source shows through)."""

    def __init__(self, source: BufferedSource, stop: threading.Event) -> None:
        self._source = source
        self._stop = stop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

    def __iter__(self) -> Iterator[Frame]:
        for frame in self._source:
            if self._stop.is_set():
                return
            yield frame


class BatchProgress:
    """Two bars and one line per finished input.

    One bar counts the inputs of the batch; the other the frames of the current input, with
    its total when known, and its per-frame latency when live.

    Args:
        console: Where bars and lines go.
        total: Inputs in the batch.
        enabled: Show the bars (the per-input lines are always printed).
    """

    def __init__(self, console: Console, total: int, enabled: bool) -> None:
        self.console = console
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
        )
        self.inputs = self.bars.add_task("inputs", total=total, detail="")
        self.current: int | None = None
        self.latency = False

    def __enter__(self) -> BatchProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def start_input(self, name: str, total: int | None, latency: bool) -> None:
        """A new bar for the frames of input ``name``; ``latency``: show per-frame latency."""
        self.current = self.bars.add_task(name, total=total, detail="")
        self.latency = latency

    def frame(self, report: FrameReport) -> None:
        """One more frame of the current input."""
        detail = f"latency {report.latency_ms:.0f} ms" if self.latency else ""
        if report.dropped:
            detail += f", {report.dropped} dropped"
        self.bars.update(self.current, completed=report.computed + report.dropped, detail=detail)

    def finish_input(self, result: InputResult) -> None:
        """Remove the frame bar, advance the inputs bar, print the input's outcome."""
        if self.current is not None:
            self.bars.remove_task(self.current)
            self.current = None
        self.bars.advance(self.inputs)
        label = result.name or result.input
        if result.status == "skipped":
            line = f"{label}: skipped (done)"
        elif result.status == "done":
            line = f"{label}: done, {result.frames} frames in {result.seconds:.1f} s"
            if self.latency and result.latency_ms:
                latency = result.latency_ms
                line += f", latency median {latency['median']:.0f} ms, p95 {latency['p95']:.0f} ms"
            line += f" ({result.reason})" if result.reason else ""
        else:
            line = f"{label} {result.status}: {result.reason}"
        warning = "[yellow]warning:[/] " if result.status in ("failed", "interrupted") else ""
        self.console.print(warning + escape(line), soft_wrap=True, highlight=False)


class BatchRunner:
    """Stream inputs one after the other, skipping finished ones and surviving failures.

    Args:
        predictor: The model, ready to stream (reset for every input).
        out_dir: Root of the outputs: ``{out_dir}/{name}/`` per input, and the report.
        formats: Output formats (see :data:`~flashdepth.inference.sinks.FORMATS`).
        fps: Frame rate of image sequences (videos state their own).
        queue_size: Frames decoded ahead and waiting for the writer, at most.
        drop_frames: Skip frames to stay live (``--realtime``).
        sink_options: Options of the mp4 sinks (``crf``, ``preset``, ``time_constant_s``).
        console: Where progress and per-input lines go (default: standard error).
        progress: Show progress bars (frames of the current input, inputs of the batch).
        debug: Print the traceback of every failure.
        about: What ran (model, weights, ...), recorded in the report.
    """

    def __init__(
        self,
        predictor: StreamingPredictor,
        out_dir: Path,
        formats: Sequence[str],
        *,
        fps: Fraction | None = None,
        queue_size: int = 8,
        drop_frames: bool = False,
        sink_options: dict[str, Any] | None = None,
        console: Console | None = None,
        progress: bool = True,
        debug: bool = False,
        about: dict[str, Any] | None = None,
    ) -> None:
        self.predictor = predictor
        self.out_dir = Path(out_dir)
        self.formats = list(formats)
        self.fps = fps
        self.queue_size = queue_size
        self.drop_frames = drop_frames
        self.sink_options = sink_options or {}
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        self.debug = debug
        self.about = about or {}

    def run(self, inputs: Sequence[str]) -> BatchReport:
        """Stream every input; Ctrl-C ends the batch with ``report.interrupted`` set.

        Returns:
            The report, also written to ``{out}/stream_report.json``.
        """
        report = BatchReport(self.out_dir, [InputResult(spec) for spec in inputs], about=self.about)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        names: dict[str, str] = {}
        with BatchProgress(self.console, len(inputs), self.show_progress) as progress:
            for result in report.results:
                try:
                    self._run_one(result, names, progress)
                except KeyboardInterrupt:
                    result.status = "interrupted"
                    result.reason = f"Ctrl-C after {result.frames} frame(s)"
                    report.interrupted = True
                progress.finish_input(result)
                report.write()
                if report.interrupted:
                    break
        return report

    def _run_one(self, result: InputResult, names: dict[str, str], progress: BatchProgress) -> None:
        """Open, skip or stream one input, filling ``result``; only Ctrl-C escapes."""
        try:
            source = open_source(result.input, self.fps, queue_size=self.queue_size)
        except Exception as error:
            self._fail(result, _reason(result.input, error))
            return
        info = source.info
        result.live, result.expected_frames = info.live, info.num_frames
        if info.live:
            info.name = f"{info.name}_{time.strftime('%Y%m%d-%H%M%S')}"
        result.name = info.name
        if info.name in names:
            source.close()
            self._fail(
                result,
                f"{result.input} would write to {self.out_dir / info.name}, like "
                f"{names[info.name]} before it; rename one of them or use another --out",
            )
            return
        names[info.name] = result.input
        if not info.live and completed(self.out_dir, info.name, self.formats):
            source.close()
            result.status = "skipped"
            return
        progress.start_input(info.name, info.num_frames, info.live or self.drop_frames)

        def on_frame(frame: FrameReport) -> None:
            result.frames, result.dropped = frame.computed, frame.dropped
            progress.frame(frame)

        started = time.perf_counter()
        stop = _LiveStop() if info.live else None
        try:
            with stop or nullcontext():
                outcome = run_stream(
                    _UntilStopped(source, stop.requested) if stop else source,  # type: ignore[arg-type]
                    self.predictor,
                    make_sinks(self.formats, **self.sink_options),
                    self.out_dir,
                    queue_size=self.queue_size,
                    drop_frames=self.drop_frames,
                    on_frame=on_frame,
                )
        except Exception as error:
            self._fail(result, _reason(result.input, error))
            return
        finally:
            result.seconds = time.perf_counter() - started
            source.close()
        result.frames, result.dropped = outcome.frames_written, outcome.frames_dropped
        result.latency_ms = {
            "mean": round(outcome.latency_ms_mean, 3),
            "median": round(outcome.latency_ms_median, 3),
            "p95": round(outcome.latency_ms_p95, 3),
        }
        if outcome.ended_early:
            self._fail(
                result,
                f"{result.input} ended after {result.frames + result.dropped} of "
                f"{outcome.expected_frames} frames (truncated or damaged file); those frames "
                f"are written in {self.out_dir / info.name}, the video is not marked complete",
            )
            return
        result.status = "done"
        if stop is not None and stop.requested.is_set():
            result.reason = f"live input stopped by Ctrl-C after {result.frames} frame(s)"

    def _fail(self, result: InputResult, reason: str) -> None:
        """Record a failure (the batch goes on); with ``debug``, show its traceback."""
        result.status, result.reason = "failed", reason
        if self.debug and sys.exc_info()[0] is not None:
            self.console.print_exception()


def _reason(spec: str, error: Exception) -> str:
    """Why ``spec`` failed (a :class:`SourceError` names the input itself)."""
    named = isinstance(error, SourceError)
    return str(error) if named else f"{spec}: {type(error).__name__}: {error}"
