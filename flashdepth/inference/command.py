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

How inputs expand is told in :mod:`flashdepth.inference.inputs`. With ``--devices N`` (and
``--num-nodes M``) the inputs are shared out among ``N * M`` processes by Lightning Fabric,
each video whole on one process (:mod:`flashdepth.inference.distributed`).
"""

from __future__ import annotations

import argparse
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
from flashdepth.inference.inputs import UsageError, check_output_names, collect_inputs
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.inference.sinks import FORMATS, make_sinks

#: Exit statuses.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Frame rates typed as decimals that mean the NTSC rates n * 1000/1001.
_NTSC_TOLERANCE = 1e-3


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
_DEVICES_HELP = "processes per node, each streaming whole videos (Lightning Fabric; torchrun/SLURM)"


def positive_int(text: str) -> int:
    """An integer of at least 1 (queue sizes, pixel counts)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``flashdepth stream``."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a renamed option must not silently match a longer one
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
    add("--devices", type=positive_int, metavar="N", help=_DEVICES_HELP)
    add("--num-nodes", type=positive_int, metavar="M", help="nodes of N processes (with --devices)")
    add("--accelerator", choices=("auto", "cpu", "cuda"), help="with --devices (default: auto)")
    add("--strategy", choices=("ddp", "ddp_spawn"), help="with --devices (default: ddp)")
    add("--no-progress", action="store_true", help="no progress bars")
    add("--debug", action="store_true", help="show tracebacks")
    return parser


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
    """The preset with its weights.

    A checkpoint that does not fit is a :class:`UsageError` carrying the loader's message
    (the keys that differ).
    """
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


def check_command(options: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Check everything that can be checked before a model is loaded.

    Returns the formats and the expanded inputs, or raises :class:`UsageError`.
    """
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
    return formats, inputs


def build_runner(
    options: argparse.Namespace,
    argv: list[str],
    formats: list[str],
    device: str,
    console: Console,
    progress: bool,
) -> BatchRunner:
    """The model on ``device``, its predictor and the batch runner over it.

    ``console`` receives the warnings and the per-input lines.
    """
    model = load_model(options.model, options.weights, console)
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
    return BatchRunner(
        predictor,
        options.out,
        formats,
        fps=options.fps,
        queue_size=options.queue_size,
        drop_frames=options.realtime,
        console=console,
        progress=progress,
        debug=options.debug,
        about={
            "command": shlex.join(["flashdepth", "stream", *argv]),
            "model": options.model,
            "weights": options.weights,
            "predictor": predictor.describe(),
            "formats": formats,
        },
    )


def finish(report: BatchReport, console: Console, errors: Console) -> int:
    """Print the summary (and how to resume after Ctrl-C); return the exit status."""
    print_summary(report, console)
    if report.interrupted:
        errors.print(
            "Interrupted: the videos finished before are complete; the interrupted one is "
            "not (no units.json; its frame files so far are valid, its mp4s keep their "
            ".partial.mp4 names). To resume, run the same command again:\n  "
            + escape(str(report.about.get("command", ""))),
            soft_wrap=True,
            highlight=False,
        )
    return report.exit_code


def _stream(options: argparse.Namespace, argv: list[str], console: Console, errors: Console) -> int:
    """Check everything, load the model, stream the inputs, summarise; return the status."""
    if options.devices is None and (options.num_nodes or options.accelerator or options.strategy):
        raise UsageError("--num-nodes, --accelerator and --strategy go with --devices N")
    formats, inputs = check_command(options)
    if options.devices is not None:
        from flashdepth.inference.distributed import stream_distributed  # Fabric: imported here

        return stream_distributed(options, argv, formats, inputs)
    device = resolve_device(options.device)
    runner = build_runner(options, argv, formats, device, errors, not options.no_progress)
    return finish(runner.run(inputs), console, errors)
