"""``flashdepth benchmark``: model speed, streaming cost and Mamba2 scan speed, as tables.

Three measurements, each side by side in one run:

``compare``
    Per-frame latency of several presets (default ``flashdepth-full`` and
    ``flashdepth-s``) at one resolution, measured in interleaved rounds so that drift
    of the machine (clock boost, other processes) hits every model alike. Prints the
    median and mean ms/frame, FPS and each model's median latency relative to the
    reference (``flashdepth-s``). The heading gives the host's 1-minute load average
    before the run: on a CPU, other busy processes, or ``--threads`` above the free
    cores, inflate latencies many times over.
``stream``
    Streams ``--frames`` frames (default 1000) through a preset and reports the median
    per-frame latency early in the stream and late in it, and the host memory (resident
    set size) after the warm-up and at the end. A streaming model in constant memory
    shows a late/early latency ratio near 1 and no memory growth.
``scan``
    One frame of FlashDepth-S tokens (841 = a 29×29 pooled grid) through the
    pure-PyTorch chunked Mamba2 scan (SSD) and through a per-token recurrence,
    with the speed ratio.

``compare`` and ``stream`` time frames with one implementation, :class:`FrameTimer`,
which follows the paper's FPS protocol and talks to a model only through
:class:`~flashdepth.models.contract.StreamingDepthModel` (so per-frame Depth Anything V2
presets stream too, with their empty state): ``--warmup`` untimed frames (default 5),
then for every frame the host-to-device copy of a frame held in host memory (pinned on
CUDA; ``uint8`` by default and normalised on the device, as a camera delivers it),
``model.step`` and a device synchronisation, all under ``torch.inference_mode()`` and,
for ``--dtype bf16|fp16``, autocast. FPS is ``1000 / mean ms``.

Resolutions are written as the paper does, width × height: ``--resolution 2044x1148``.
The default, ``126x70``, runs in seconds on a CPU; the paper's setting is
``flashdepth benchmark compare --device cuda --dtype bf16 --resolution 2044x1148``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import cast

import torch
from torch import Tensor

from flashdepth.models.contract import StreamingDepthModel
from flashdepth.temporal.ssd import naive_recurrent_scan, ssd_chunked_scan
from flashdepth.transforms import IMAGENET_MEAN, IMAGENET_STD

#: Side lengths must be multiples of the ViT patch.
PATCH_SIZE = 14
#: ``--dtype`` names and the autocast dtype they select (``None``: no autocast).
DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: Presets of ``compare`` when ``--models`` is not given, and its reference model.
DEFAULT_COMPARE_MODELS = ("flashdepth-full", "flashdepth-s")
REFERENCE_MODEL = "flashdepth-s"
#: Distinct frames a timer cycles through (the model never sees one frame twice in a row).
SOURCE_FRAMES = 8


def resident_memory_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; else peak RSS)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_resolution(text: str) -> tuple[int, int]:
    """Read a resolution written ``WIDTHxHEIGHT`` (the paper's order, e.g. ``2044x1148``).

    Args:
        text: Width and height in pixels joined by ``x`` (``X`` and ``×`` work too).

    Returns:
        ``(height, width)``, the order of tensor shapes.

    Raises:
        ValueError: When the text is not two positive integers or a side is not a multiple
            of 14 (the ViT patch); the message names the value.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"resolution {text!r} is not WIDTHxHEIGHT in pixels, e.g. 2044x1148")
    width, height = int(match[1]), int(match[2])
    wrong = [
        f"{side} {value}"
        for side, value in (("width", width), ("height", height))
        if value <= 0 or value % PATCH_SIZE
    ]
    if wrong:
        verb = "is not a positive multiple" if len(wrong) == 1 else "are not positive multiples"
        raise ValueError(
            f"resolution {text!r} (width x height): {' and '.join(wrong)} {verb} of {PATCH_SIZE}"
        )
    return height, width


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(durations: Sequence[float]) -> float:
    return statistics.median(durations) * 1e3


class FrameTimer:
    """Streams frames through one model and times each frame with the paper's protocol.

    Timed per frame: the host-to-device copy of the next frame (pinned host memory on
    CUDA), its normalisation on the device when it is ``uint8``, ``model.step`` with the
    carried state, and a device synchronisation. Everything runs under
    ``torch.inference_mode()``; ``dtype`` ``bf16``/``fp16`` wraps the step in autocast.
    The state persists across calls, so a caller can time a stream in several slices
    (interleaved with other models) and it stays one stream.

    Args:
        model: Any model of the zoo (already on ``device`` and in eval mode).
        height: Frame height in pixels (multiple of 14).
        width: Frame width in pixels (multiple of 14).
        device: ``cpu`` or ``cuda`` (or ``cuda:N``).
        dtype: ``fp32``, ``bf16`` or ``fp16`` (a key of :data:`DTYPES`).
        compile: Run ``torch.compile(model.step)`` instead of ``model.step``.
        input_dtype: ``uint8`` (frames as a camera delivers them, normalised with the
            ImageNet mean/std inside the timed region) or ``float`` (already normalised
            float32 frames, four times the bytes to copy).
        seed: Seed of the random frames (every timer with the same seed and size sees the
            same frames).
    """

    def __init__(
        self,
        model: StreamingDepthModel,
        height: int,
        width: int,
        *,
        device: str | torch.device = "cpu",
        dtype: str = "fp32",
        compile: bool = False,
        input_dtype: str = "uint8",
        seed: int = 0,
    ) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if input_dtype not in ("uint8", "float"):
            raise ValueError(f"input_dtype must be 'uint8' or 'float', got {input_dtype!r}")
        self.device = torch.device(device)
        self.model = model
        self.autocast_dtype = DTYPES[dtype]
        self.steps_run = 0
        self._step = torch.compile(model.step) if compile else model.step
        generator = torch.Generator().manual_seed(seed)
        shape = (SOURCE_FRAMES, 1, 3, height, width)
        if input_dtype == "uint8":
            self.source = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        else:
            self.source = torch.randn(shape, generator=generator)
        if self.device.type == "cuda":
            self.source = self.source.pin_memory()
        # (x / 255 - mean) / std == (x - 255 mean) / (255 std): one subtraction, one division
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(3, 1, 1) * 255
        with torch.inference_mode():
            self.state = model.init_state(1, device=self.device, image_size=(height, width))

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _one_frame(self) -> float:
        """Copy, (normalise,) step and synchronise one frame; its wall time in seconds."""
        host_frame = self.source[self.steps_run % SOURCE_FRAMES]
        self.steps_run += 1
        _synchronize(self.device)
        start = time.perf_counter()
        frame: Tensor = host_frame.to(self.device, non_blocking=True)
        if frame.dtype == torch.uint8:
            frame = frame.float().sub_(self._mean).div_(self._std)
        with self._autocast():
            _, self.state = self._step(frame, self.state)
        _synchronize(self.device)
        return time.perf_counter() - start

    def run(self, frames: int, on_frame: Callable[[], object] | None = None) -> list[float]:
        """Stream ``frames`` more frames, continuing the state.

        Args:
            frames: Number of frames.
            on_frame: Called after every frame, outside the timed region (a progress bar's
                ``update``).

        Returns:
            The wall time of every frame in milliseconds. Warm-up frames are simply frames
            whose times the caller drops (:meth:`warm_up`).
        """
        durations = []
        with torch.inference_mode():
            for _ in range(frames):
                durations.append(self._one_frame() * 1e3)
                if on_frame is not None:
                    on_frame()
        return durations

    def warm_up(self, frames: int, on_frame: Callable[[], object] | None = None) -> None:
        """Stream ``frames`` untimed frames (lazy initialisation, compilation, caches)."""
        self.run(frames, on_frame)


def _build(name: str, device: str | torch.device) -> StreamingDepthModel:
    from flashdepth.models.registry import create_model

    return cast(StreamingDepthModel, create_model(name).to(device).eval())


def benchmark_stream(
    model_name: str = "flashdepth-s",
    frames: int = 1000,
    height: int = 70,
    width: int = 126,
    window: int = 50,
    device: str = "cpu",
    progress: bool = True,
    *,
    warmup: int = 5,
    dtype: str = "fp32",
    compile: bool = False,
    input_dtype: str = "uint8",
) -> dict[str, float]:
    """Per-frame latency early vs late in a long stream, and host memory growth.

    Args:
        model_name: Any preset of :func:`~flashdepth.models.registry.list_models`.
        frames: Stream length, warm-up frames included.
        height: Frame height in pixels (multiple of 14).
        width: Frame width in pixels (multiple of 14).
        window: Frames per timing window; the early window starts after the warm-up.
        device: ``cpu`` or ``cuda``.
        progress: Show a progress bar.
        warmup: Untimed frames at the start of the stream.
        dtype: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        compile: ``torch.compile`` the step.
        input_dtype: ``uint8`` or ``float`` host frames (see :class:`FrameTimer`).

    Returns:
        ``early_ms``, ``late_ms``, ``latency_ratio``, ``rss_start_mb``, ``rss_end_mb``,
        ``rss_growth_mb``.
    """
    from tqdm import tqdm

    if frames < 2 * window + warmup:
        raise ValueError(
            f"--frames must be at least {2 * window + warmup} for windows of {window} "
            f"after {warmup} warm-up frames"
        )
    model = _build(model_name, device)
    timer = FrameTimer(
        model,
        height,
        width,
        device=device,
        dtype=dtype,
        compile=compile,
        input_dtype=input_dtype,
    )
    with tqdm(total=frames, desc="streaming", disable=not progress) as bar:
        timer.warm_up(warmup, bar.update)
        rss_start = resident_memory_mb()
        durations = timer.run(frames - warmup, bar.update)
    rss_end = resident_memory_mb()
    early = statistics.median(durations[:window])
    late = statistics.median(durations[-window:])
    return {
        "early_ms": early,
        "late_ms": late,
        "latency_ratio": late / early,
        "rss_start_mb": rss_start,
        "rss_end_mb": rss_end,
        "rss_growth_mb": rss_end - rss_start,
    }


def _split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal positive counts (fewer parts when total is small)."""
    parts = max(1, min(parts, total))
    return [total // parts + (index < total % parts) for index in range(parts)]


def resolve_reference(names: Sequence[str], reference: str | None = None) -> str:
    """The reference of a comparison.

    ``reference`` if given, else ``flashdepth-s`` when it is compared, else the first name.

    Raises:
        ValueError: When ``reference`` is not among ``names``.
    """
    if reference is None:
        return REFERENCE_MODEL if REFERENCE_MODEL in names else names[0]
    if reference not in names:
        raise ValueError(f"reference model {reference!r} is not among {list(names)}")
    return reference


def compare_models(
    models: Mapping[str, StreamingDepthModel],
    height: int,
    width: int,
    frames: int = 50,
    *,
    warmup: int = 5,
    rounds: int = 5,
    reference: str | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    compile: bool = False,
    input_dtype: str = "uint8",
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Per-frame latency of several models at one resolution, measured side by side.

    Every model first streams ``warmup`` untimed frames. The ``frames`` timed frames of
    each model are then split into ``rounds`` slices; round ``r`` times one slice of every
    model, starting with model ``r`` (mod the count) so no model always runs first. Each
    model keeps one stream (its state) throughout.

    Args:
        models: Name -> model (on ``device``, in eval mode); the table keeps this order.
        height: Frame height in pixels (multiple of 14).
        width: Frame width in pixels (multiple of 14).
        frames: Timed frames per model, after the warm-up.
        warmup: Untimed frames per model before the first round.
        rounds: Interleaved rounds (at most ``frames``).
        reference: The model whose median latency is 1 in the ``ratio`` column;
            ``None``: ``flashdepth-s`` when compared, else the first model.
        device: ``cpu`` or ``cuda``.
        dtype: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        compile: ``torch.compile`` each model's step.
        input_dtype: ``uint8`` or ``float`` host frames (see :class:`FrameTimer`).
        progress: Show a progress bar.

    Returns:
        Per model: ``median_ms``, ``mean_ms``, ``fps`` (``1000 / mean_ms``), ``frames``
        (timed) and ``ratio`` (its median over the reference's median; > 1 is slower).
    """
    from tqdm import tqdm

    if not models:
        raise ValueError("no model to compare")
    if frames < 1 or warmup < 0:
        raise ValueError(f"need frames >= 1 and warmup >= 0, got {frames} and {warmup}")
    names = list(models)
    reference = resolve_reference(names, reference)
    timers = {
        name: FrameTimer(
            model,
            height,
            width,
            device=device,
            dtype=dtype,
            compile=compile,
            input_dtype=input_dtype,
        )
        for name, model in models.items()
    }
    durations: dict[str, list[float]] = {name: [] for name in names}
    with tqdm(total=len(names) * (warmup + frames), desc="comparing", disable=not progress) as bar:
        for timer in timers.values():
            timer.warm_up(warmup, bar.update)
        for index, count in enumerate(_split(frames, rounds)):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                durations[name] += timers[name].run(count, bar.update)
    reference_median = statistics.median(durations[reference])
    results = {}
    for name in names:
        median = statistics.median(durations[name])
        mean = statistics.fmean(durations[name])
        results[name] = {
            "median_ms": median,
            "mean_ms": mean,
            "fps": 1e3 / mean,
            "frames": float(len(durations[name])),
            "ratio": median / reference_median,
        }
    return results


def build_models(
    names: Sequence[str], device: str | torch.device
) -> dict[str, StreamingDepthModel]:
    """Presets by name, on ``device`` and in eval mode (the input of :func:`compare_models`)."""
    return {name: _build(name, device) for name in names}


def _time_call(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return _median_ms(durations)


def benchmark_scan(
    tokens: int = 841, heads: int = 8, headdim: int = 32, d_state: int = 256, repeats: int = 5
) -> dict[str, float]:
    """Chunked SSD scan vs per-token recurrence on one frame (FlashDepth-S sizes).

    Returns:
        ``chunked_ms``, ``recurrent_ms``, ``speedup`` and ``max_abs_diff`` (the two agree).
    """
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, tokens, heads, headdim, generator=generator)
    dt = torch.nn.functional.softplus(torch.randn(1, tokens, heads, generator=generator) - 3)
    a = -torch.rand(heads, generator=generator) * 15 - 1
    b = torch.randn(1, tokens, 1, d_state, generator=generator)
    c = torch.randn(1, tokens, 1, d_state, generator=generator)
    state = torch.randn(1, heads, headdim, d_state, generator=generator)
    with torch.inference_mode():
        chunked, _ = ssd_chunked_scan(x, dt, a, b, c, 256, state)
        recurrent, _ = naive_recurrent_scan(x, dt, a, b, c, state)
        chunked_ms = _time_call(lambda: ssd_chunked_scan(x, dt, a, b, c, 256, state), repeats)
        recurrent_ms = _time_call(lambda: naive_recurrent_scan(x, dt, a, b, c, state), repeats)
    return {
        "chunked_ms": chunked_ms,
        "recurrent_ms": recurrent_ms,
        "speedup": recurrent_ms / chunked_ms,
        "max_abs_diff": (chunked - recurrent).abs().max().item(),
    }


def format_table(rows: Sequence[tuple[str, str]]) -> str:
    """Two-column text table."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def format_columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Text table with a header: first column left-aligned, the others right-aligned."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_comparison(results: Mapping[str, Mapping[str, float]], reference: str) -> str:
    """The table of :func:`compare_models`: one row per model, in the given order."""
    header = ("model", "median ms", "mean ms", "FPS", f"vs {reference}")
    rows = [
        (
            name,
            f"{row['median_ms']:.2f}",
            f"{row['mean_ms']:.2f}",
            f"{row['fps']:.2f}",
            f"{row['ratio']:.2f}x",
        )
        for name, row in results.items()
    ]
    return format_columns(header, rows)


def _load_average() -> str:
    """``", host load 0.42"``: the 1-minute load average (other processes skew CPU timings)."""
    try:
        return f", host load {os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):  # not on every platform
        return ""


def _resolution_argument(text: str) -> tuple[int, int]:
    try:
        return parse_resolution(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``flashdepth benchmark``.

    ``stream-io`` is :mod:`flashdepth.inference.benchmark_io` (the whole ``flashdepth stream``
    pipeline).
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stream-io"]:
        from flashdepth.inference.benchmark_io import main as stream_io_main

        return stream_io_main(argv[1:])
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a renamed option must not silently match a longer one
        prog="flashdepth benchmark",
        description=(
            "Per-frame latency of presets side by side (compare), streaming latency/memory "
            "over a long stream (stream), Mamba2 scan speed (scan) and the whole stream "
            "pipeline vs the bare model (stream-io, `flashdepth benchmark stream-io -h`); "
            "'all' runs stream and scan. Paper setting: compare --device cuda --dtype bf16 "
            "--resolution 2044x1148."
        ),
    )
    parser.add_argument(
        "what",
        nargs="?",
        choices=("all", "compare", "stream", "scan"),
        default="all",
        help="compare: presets side by side; stream: one long stream; scan: Mamba2 scan; "
        "all (default): stream and scan",
    )
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_COMPARE_MODELS),
        help="compare: comma-separated presets (default: %(default)s)",
    )
    parser.add_argument(
        "--reference",
        default=None,
        help=f"compare: model whose latency is 1x (default: {REFERENCE_MODEL} if compared, "
        "else the first)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="compare: interleaved rounds (default: 5)"
    )
    parser.add_argument(
        "--model", default="flashdepth-s", help="stream: preset to stream (default: %(default)s)"
    )
    parser.add_argument(
        "--resolution",
        type=_resolution_argument,
        default=None,
        metavar="WxH",
        help="frame size in pixels as WIDTHxHEIGHT, width first like the paper "
        "(2044x1148 is 2044 wide, 1148 high); multiples of 14 (default: 126x70)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="compare: timed frames per model after the warm-up (default: 50); "
        "stream: stream length, warm-up included (default: 1000)",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed frames first (default: %(default)s)"
    )
    parser.add_argument(
        "--height", type=int, default=None, help="frame height, pixels (or use --resolution)"
    )
    parser.add_argument(
        "--width", type=int, default=None, help="frame width, pixels (or use --resolution)"
    )
    parser.add_argument("--window", type=int, default=50, help="stream: frames per window")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument(
        "--dtype",
        choices=tuple(DTYPES),
        default="fp32",
        help="fp32, or autocast to bf16/fp16 (CUDA; bf16 also on CPU) (default: %(default)s)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the step")
    parser.add_argument(
        "--input",
        choices=("uint8", "float"),
        default="uint8",
        help="host frames: uint8 normalised on the device (timed), or normalised float32 "
        "(default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)

    if args.resolution is not None and (args.height is not None or args.width is not None):
        parser.error("give either --resolution WxH or --height/--width, not both")
    height, width = args.resolution or (70, 126)
    height = args.height if args.height is not None else height
    width = args.width if args.width is not None else width
    for side, value in (("--height", height), ("--width", width)):
        if value <= 0 or value % PATCH_SIZE:
            parser.error(f"{side} {value} must be a positive multiple of {PATCH_SIZE}")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch finds no CUDA device")
    for option, value, least in (
        ("--frames", args.frames, 1),
        ("--warmup", args.warmup, 0),
        ("--rounds", args.rounds, 1),
        ("--window", args.window, 1),
    ):
        if value is not None and value < least:
            parser.error(f"{option} must be at least {least}, got {value}")
    from flashdepth.models.registry import list_models

    names = list(dict.fromkeys(name.strip() for name in args.models.split(",") if name.strip()))
    if args.what == "compare":
        unknown = [name for name in names if name not in list_models()]
    else:
        names = [args.model]
        unknown = [] if args.what == "scan" or args.model in list_models() else names
    if not names or unknown:
        parser.error(
            f"unknown model(s) {unknown or 'none given'}; available: {', '.join(list_models())}"
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    timing = {
        "warmup": args.warmup,
        "dtype": args.dtype,
        "compile": args.compile,
        "input_dtype": args.input,
        "progress": not args.no_progress,
    }
    setting = f"{width}x{height} (WxH), {args.device}, {args.dtype}"
    if args.compile:
        setting += ", compiled"

    if args.what == "compare":
        frames = 50 if args.frames is None else args.frames
        try:
            reference = resolve_reference(names, args.reference)
        except ValueError as error:
            parser.error(f"--reference: {error}")
        load = _load_average()
        results = compare_models(
            build_models(names, args.device),
            height,
            width,
            frames,
            rounds=args.rounds,
            reference=reference,
            device=args.device,
            **timing,
        )
        print(
            f"compare: {setting}, {frames} frames per model after {args.warmup} warm-up, "
            f"{min(args.rounds, frames)} interleaved rounds{load}"
        )
        print(format_comparison(results, reference))
        return 0

    rows: list[tuple[str, str]] = []
    if args.what in ("all", "stream"):
        frames = 1000 if args.frames is None else args.frames
        try:
            stream = benchmark_stream(
                args.model, frames, height, width, args.window, args.device, **timing
            )
        except ValueError as error:
            parser.error(str(error))
        first, last = args.warmup, args.warmup + args.window
        rows += [
            (f"stream: {args.model} {setting}", ""),
            (f"  median latency, frames {first}-{last}", f"{stream['early_ms']:.2f} ms"),
            (f"  median latency, last {args.window} frames", f"{stream['late_ms']:.2f} ms"),
            ("  late / early", f"{stream['latency_ratio']:.3f}"),
            ("  host RSS after warm-up", f"{stream['rss_start_mb']:.1f} MiB"),
            ("  host RSS at the end", f"{stream['rss_end_mb']:.1f} MiB"),
            ("  growth", f"{stream['rss_growth_mb']:+.1f} MiB"),
        ]
    if args.what in ("all", "scan"):
        scan = benchmark_scan()
        rows += [
            ("scan: one frame, 841 tokens, 8 heads x 32, d_state 256", ""),
            ("  chunked SSD (chunk 256)", f"{scan['chunked_ms']:.2f} ms"),
            ("  per-token recurrence", f"{scan['recurrent_ms']:.2f} ms"),
            ("  speed-up", f"{scan['speedup']:.1f}x"),
            ("  max |difference|", f"{scan['max_abs_diff']:.1e}"),
        ]
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
