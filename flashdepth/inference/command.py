"""``flashdepth stream``: depth for videos, image sequences and cameras, from the command line.

::

    flashdepth stream my_video.mp4 --model flashdepth-s --weights flashdepth-s --out depth/
    flashdepth stream shots/ "renders/*.mov" --formats exr,png16,sbs --out depth/
    flashdepth stream /dev/video0 --realtime --formats mp4 --out live/

Everything that can be checked before the model is loaded is checked first, and a problem
there is a usage error (exit 2): no input, a path that does not exist, a glob that matches
nothing, two inputs that would write to the same output folder, an output folder that cannot
be written, unknown model, format or device. Weights that do not fit the model are the
loader's error, also exit 2. Then :class:`~flashdepth.inference.batch.BatchRunner` streams
the inputs one after the other (skipping finished ones, recording failures) and a summary
closes the run: exit 0 when every input is done or skipped, 1 when one failed, 130 after
Ctrl-C (rerun the same command to resume).

How inputs expand: a video file is itself; a folder holding videos is those videos, sorted
by name; a folder holding images is one image sequence; a folder holding neither but
sub-folders of images is one sequence per sub-folder (a folder of shots); a quoted glob is
the videos and folders it matches, or one image sequence when it matches images; ``%04d``
patterns, camera devices (``/dev/video0``, ``0``) and URLs are passed as they are. A
``--list-file`` holds one input per line (blank lines and ``#`` comments skipped; relative
paths are relative to the list file's folder).
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import nn

import flashdepth
from flashdepth.checkpoints import CheckpointError
from flashdepth.inference.batch import REPORT_FILE, STATUSES, BatchReport, BatchRunner
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.inference.sinks import FORMATS, make_sinks
from flashdepth.inference.sources import IMAGE_EXTENSIONS, STREAM_SCHEMES

#: Files a folder or glob expands to as videos (anything FFmpeg reads can be named directly).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mxf", ".mpg", ".mpeg")
#: Exit statuses.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Frame rates typed as decimals that mean the NTSC rates n * 1000/1001.
_NTSC_TOLERANCE = 1e-3


class UsageError(Exception):
    """A problem with the command line, found before any video is streamed (exit 2)."""


def parse_resolution(text: str) -> int | tuple[int, int] | None:
    """``"518"`` (short side), ``"518x924"`` (explicit H x W) or ``"input"`` (frame's size)."""
    if text == "input":
        return None
    try:
        sides = tuple(int(side) for side in text.lower().split("x"))
    except ValueError:
        sides = ()
    if len(sides) not in (1, 2) or min(sides) < 14:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a resolution: give the short side in pixels (518), an explicit "
            "HxW with sides multiples of 14 (518x924), or 'input'"
        )
    return sides[0] if len(sides) == 1 else sides  # type: ignore[return-value]


def parse_fps(text: str) -> Fraction:
    """An exact rate: ``24``, ``30000/1001``; ``23.976``/``29.97``/``59.94`` mean n*1000/1001."""
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        rate = Fraction(0)
    if rate <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a frame rate; e.g. 24 or 30000/1001")
    ntsc = Fraction(round(rate * Fraction(1001, 1000)) * 1000, 1001)
    if "." in text and abs(ntsc - rate) < _NTSC_TOLERANCE:
        return ntsc
    return rate


_INPUT_HELP = (
    "video files, folders (of videos, of images, of image folders), quoted globs, %%04d "
    "patterns, cameras (/dev/video0, 0), stream URLs"
)
_RESOLUTION_HELP = "network input: short side in px, HxW, or 'input' (default: 518)"
_FORMATS_HELP = f"comma-separated, from {','.join(FORMATS)} (default: exr,mp4)"


def positive_int(text: str) -> int:
    """An integer of at least 1 (queue sizes, pixel counts)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``flashdepth stream``."""
    parser = argparse.ArgumentParser(
        prog="flashdepth stream",
        description="Depth of videos, image sequences and cameras, streamed frame by frame "
        "(constant memory). Finished outputs are skipped, so rerunning resumes.",
        epilog=f"exit status: {EXIT_OK} all done or skipped, {EXIT_FAILED} an input failed, "
        f"{EXIT_USAGE} usage error, {EXIT_INTERRUPTED} interrupted. A report is written to "
        f"OUT/{REPORT_FILE}.",
    )
    add = parser.add_argument
    add("inputs", nargs="*", metavar="INPUT", help=_INPUT_HELP)
    add("--out", required=True, type=Path, metavar="DIR", help="output folder: DIR/NAME/...")
    add("--model", default="flashdepth-s", metavar="NAME", help="a preset (default: %(default)s)")
    add("--weights", metavar="W", help="checkpoint file or registry name (default: random)")
    add("--resolution", type=parse_resolution, default=518, metavar="R", help=_RESOLUTION_HELP)
    add("--long-side-max", type=positive_int, metavar="PX", help="cap on the network's long side")
    add("--formats", default="exr,mp4", metavar="LIST", help=_FORMATS_HELP)
    add("--device", default="auto", metavar="DEV", help="auto, cpu, cuda, cuda:N (default: auto)")
    add("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="fp16 needs CUDA")
    add("--compile", action="store_true", help="torch.compile the streaming step")
    add("--fps", type=parse_fps, help="frame rate of image sequences: 24, 30000/1001, 29.97")
    add("--realtime", action="store_true", help="drop frames to stay live; show latency")
    add(
        "--queue-size",
        type=positive_int,
        default=8,
        metavar="N",
        help="frames buffered (default: 8)",
    )
    add("--list-file", type=Path, metavar="FILE", help="more inputs, one per line")
    add("--no-progress", action="store_true", help="no progress bars")
    add("--debug", action="store_true", help="show tracebacks")
    return parser


def _is_live(spec: str) -> bool:
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    return scheme in STREAM_SCHEMES or spec.isdigit() or spec.startswith("/dev/video")


def _suffixed(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def expand_input(spec: str) -> list[str]:
    """The input(s) ``spec`` stands for (see the module docstring); raises :class:`UsageError`."""
    path = Path(spec)
    if _is_live(spec) or "%" in path.name or path.is_file():
        return [spec]
    if path.is_dir():
        path = path.resolve() if path.name in ("", ".", "..") else path
        if videos := _suffixed(path, VIDEO_EXTENSIONS):
            return [str(video) for video in videos]
        if _suffixed(path, IMAGE_EXTENSIONS):
            return [str(path)]
        shots = [p for p in sorted(path.iterdir()) if p.is_dir() and _suffixed(p, IMAGE_EXTENSIONS)]
        if shots:
            return [str(shot) for shot in shots]
        raise UsageError(
            f"folder {spec} holds no videos ({', '.join(VIDEO_EXTENSIONS)}), no images and no "
            "folders of images; name the files to stream"
        )
    if glob.has_magic(spec):
        matches = sorted(glob.glob(spec))
        if not matches:
            raise UsageError(f"no file matches {spec}; check the pattern")
        if any(Path(match).suffix.lower() in IMAGE_EXTENSIONS for match in matches):
            return [spec]
        return [item for match in matches for item in expand_input(match)]
    raise UsageError(
        f"input {spec} does not exist; give a video, a folder, a pattern, a camera "
        "(/dev/video0) or a URL"
    )


def collect_inputs(specs: list[str], list_file: Path | None) -> list[str]:
    """Every input of the command line and the list file, expanded, first occurrence kept."""
    if list_file is not None:
        if not list_file.is_file():
            raise UsageError(f"list file {list_file} does not exist")
        for line in list_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                relative = not _is_live(line) and not Path(line).is_absolute()
                specs = [*specs, str(list_file.parent / line) if relative else line]
    if not specs:
        raise UsageError("no input given; name videos, folders or cameras, or use --list-file")
    inputs: dict[str, str] = {}
    for spec in specs:
        for item in expand_input(spec):
            inputs.setdefault(os.path.abspath(item) if Path(item).exists() else item, item)
    return list(inputs.values())


def check_output_names(inputs: list[str], out: Path) -> None:
    """Refuse two inputs that would write to one ``{out}/{name}`` folder (files and folders;
    patterns, cameras and URLs are named when opened and checked then)."""
    seen: dict[str, str] = {}
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            name = path.name
        elif path.is_file() and path.suffix.lower() not in IMAGE_EXTENSIONS:
            name = path.stem
        else:
            continue
        if name in seen:
            raise UsageError(
                f"inputs {seen[name]} and {spec} would both write to {out / name}; rename "
                "one, or run them with different --out folders"
            )
        seen[name] = spec


def check_writable(out: Path) -> None:
    """Create ``out`` and write a file in it, or raise :class:`UsageError`."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".flashdepth-write-check"):
            pass
    except OSError as error:
        raise UsageError(
            f"output folder {out} is not writable ({error.strerror or error}); choose another "
            "--out or fix its permissions"
        ) from error


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; refuse CUDA where there is none."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise UsageError(f"--device {device!r}: give auto, cpu, cuda or cuda:N")
    if device != "cpu" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available here; use --device cpu")
    return device


def load_model(name: str, weights: str | None, console: Console) -> nn.Module:
    """The preset with its weights; a checkpoint that does not fit is a :class:`UsageError`
    carrying the loader's message (the keys that differ)."""
    if weights is None:
        console.print(
            f"[bold red]WARNING: no --weights given: {name} has RANDOM weights and its depth "
            "means nothing.[/] Use this only to test the pipeline; pass --weights FILE or a "
            "registry name (see checkpoints/README.md) for real depth.",
            soft_wrap=True,
        )
    try:
        return flashdepth.create_model(name, weights=weights)
    except (CheckpointError, FileNotFoundError) as error:
        raise UsageError(str(error)) from error


def print_summary(report: BatchReport, console: Console) -> None:
    """A table of the inputs (status, frames, seconds, fps, reason), then the totals."""
    table = Table(title="flashdepth stream", title_justify="left")
    for column in ("input", "status", "frames", "seconds", "fps"):
        table.add_column(column, justify="left" if column in ("input", "status") else "right")
    table.add_column("reason", overflow="fold")
    for result in report.results:
        expected = f"/{result.expected_frames}" if result.expected_frames else ""
        expected += f" ({result.dropped} dropped)" if result.dropped else ""
        table.add_row(
            escape(result.name or result.input),
            result.status,
            "" if result.status == "skipped" else f"{result.frames}{expected}",
            f"{result.seconds:.1f}",
            f"{result.fps:.1f}" if result.seconds else "",
            escape(result.reason or ""),
        )
    console.print(table)
    counts = ", ".join(
        f"{report.count(status)} {status}"
        for status in STATUSES
        if report.count(status) or status in STATUSES[:3]  # done, skipped, failed: always
    )
    console.print(
        f"{counts}; {report.frames} frames in {report.seconds:.1f} s "
        f"({report.mean_fps:.2f} frames/s); report: {report.out_dir / REPORT_FILE}",
        soft_wrap=True,
        highlight=False,
    )


def main(args: list[str] | None = None) -> int:
    """Run ``flashdepth stream``.

    Args:
        args: The arguments after ``flashdepth stream``; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 all done or skipped, 1 an input failed, 2 usage error, 130 Ctrl-C.
    """
    argv = sys.argv[1:] if args is None else list(args)
    try:
        options = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error
        return int(exit_.code or 0)
    console, errors = Console(), Console(stderr=True)
    try:
        return _stream(options, argv, console, errors)
    except UsageError as error:
        errors.print(f"[red]error:[/] {escape(str(error))}", soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        errors.print("interrupted; nothing incomplete has a final name: rerun to resume")
        return EXIT_INTERRUPTED
    except Exception as error:
        if options.debug:
            raise
        errors.print(
            f"[red]error:[/] {escape(f'{type(error).__name__}: {error}')} (--debug shows "
            "the traceback)",
            soft_wrap=True,
        )
        return EXIT_FAILED


def _stream(options: argparse.Namespace, argv: list[str], console: Console, errors: Console) -> int:
    """Check everything, load the model, stream the inputs, summarise; return the status."""
    if options.model not in flashdepth.list_models():
        raise UsageError(
            f"unknown model {options.model!r}; choose from {', '.join(flashdepth.list_models())}"
        )
    formats = [name.strip() for name in options.formats.split(",") if name.strip()]
    try:
        make_sinks(formats)
    except ValueError as error:
        raise UsageError(f"--formats {options.formats}: {error}") from error
    inputs = collect_inputs(options.inputs, options.list_file)
    check_output_names(inputs, options.out)
    check_writable(options.out)
    device = resolve_device(options.device)
    model = load_model(options.model, options.weights, errors)
    try:
        predictor = StreamingPredictor(
            model,
            options.resolution,
            options.long_side_max,
            device=device,
            dtype=options.dtype,
            compile=options.compile,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    command = shlex.join(["flashdepth", "stream", *argv])
    runner = BatchRunner(
        predictor,
        options.out,
        formats,
        fps=options.fps,
        queue_size=options.queue_size,
        drop_frames=options.realtime,
        console=errors,
        progress=not options.no_progress,
        debug=options.debug,
        about={
            "command": command,
            "model": options.model,
            "weights": options.weights,
            "predictor": predictor.describe(),
            "formats": formats,
        },
    )
    report = runner.run(inputs)
    print_summary(report, console)
    if report.interrupted:
        errors.print(
            "Interrupted: the videos finished before are complete; the interrupted one is "
            "not (no units.json; its frame files so far are valid, its mp4s keep their "
            ".partial.mp4 names). To resume, run the same command again:\n  " + escape(command),
            soft_wrap=True,
            highlight=False,
        )
    return report.exit_code
