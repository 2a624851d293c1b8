"""``flashdepth data``: make, convert, inspect and benchmark clip shards.

Subcommands:
    ``synth``      render procedural synthetic clips with exact depth into shards;
    ``convert``    turn a raw dataset folder into shards (``--list`` shows the converters);
    ``inspect``    decode every clip of some shards and print counts, depth statistics, errors;
    ``benchmark``  measure the training pipeline's decoded frames/s against bare decoding.

:func:`main` returns the exit status: 0 on success, 1 when ``inspect`` found decode errors,
2 for a user error (bad arguments, missing files, malformed shards), reported on stderr without
a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time

from datamodules.format import ShardFormatError

_D = "(default %(default)s)"
_EPILOG = "Depth in shards is in metres (+inf sky, NaN invalid); see the README 'Clip shards'."


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``flashdepth data``."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a renamed option must not silently match a longer one
        prog="flashdepth data",
        description="Make, convert, inspect and benchmark clip shards (WebDataset tar files).",
        epilog=_EPILOG,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    synth = commands.add_parser(
        "synth",
        allow_abbrev=False,
        help="render synthetic clips with exact depth into shards",
        description="Render procedural scenes (textured ground, walls, boxes, spheres, moving "
        "camera and objects, sky) with exact z-depth in metres into shards "
        "DIR/synthetic-SPLIT-NNNNNN.tar. Deterministic for a seed: clip i is drawn from "
        "(seed, first_index + i).",
        epilog=_EPILOG,
    )
    synth.add_argument(
        "--out", required=True, metavar="DIR", help="output folder (created if needed)"
    )
    synth.add_argument("--num-clips", type=int, required=True, metavar="N", help="clips to render")
    synth.add_argument("--frames", type=int, default=16, metavar="F", help=f"frames per clip {_D}")
    synth.add_argument("--height", type=int, default=126, metavar="H", help=f"image height {_D}")
    synth.add_argument("--width", type=int, default=224, metavar="W", help=f"image width {_D}")
    synth.add_argument("--seed", type=int, default=0, metavar="S", help=f"random seed {_D}")
    synth.add_argument(
        "--clips-per-shard", type=int, default=16, metavar="K", help=f"clips per shard {_D}"
    )
    synth.add_argument("--split", default="train", help=f"split name in the file names {_D}")
    synth.add_argument(
        "--first-index",
        type=int,
        default=0,
        metavar="I",
        help=f"index of the first clip; give each split its own range so scenes differ {_D}",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace existing shards")

    convert = commands.add_parser(
        "convert",
        allow_abbrev=False,
        help="convert a raw dataset folder into shards",
        description="Convert one split of a raw dataset into shards DIR/NAME-SPLIT-NNNNNN.tar. "
        "Resumable: re-running the same command keeps complete shards.",
        epilog=_EPILOG,
    )
    convert.add_argument("name", nargs="?", metavar="NAME", help="converter (see --list)")
    convert.add_argument("--list", action="store_true", help="list converters and their units")
    convert.add_argument("--root", metavar="RAW", help="raw dataset folder, as downloaded")
    convert.add_argument("--out", metavar="DIR", help="output folder for the shards")
    convert.add_argument(
        "--clip-length",
        type=int,
        default=32,
        metavar="L",
        help=f"frames per clip; 0 keeps each scene whole (evaluation sets) {_D}",
    )
    convert.add_argument("--stride", type=int, default=1, metavar="S", help=f"frame step {_D}")
    convert.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="converter-specific option, repeatable (e.g. sintel: render_pass=final)",
    )
    convert.add_argument("--split", help="split to convert (default: the converter's first)")
    convert.add_argument(
        "--clips-per-shard", type=int, default=16, metavar="K", help=f"clips per shard {_D}"
    )
    convert.add_argument(
        "--overwrite", action="store_true", help="replace shards made with another configuration"
    )

    inspect_command = commands.add_parser(
        "inspect",
        allow_abbrev=False,
        help="print clip counts, resolutions, depth statistics and decode errors",
        description="Decode every clip and print per dataset: clips, frames, resolutions, "
        "depth min/p1/p50/p99/max in metres over valid finite pixels, invalid (NaN) and sky "
        "(+inf) fractions, and every decode error with shard, key and field. Exit status 1 "
        "when there are decode errors.",
        epilog=_EPILOG,
    )
    inspect_command.add_argument(
        "shards", nargs="+", metavar="SHARDS", help="shard files, folders, globs or brace patterns"
    )

    commands.add_parser(  # its arguments belong to datamodules.benchmark; main() passes them on
        "benchmark",
        add_help=False,
        help="decoded frames/s of the training pipeline vs bare decoding "
        "(flashdepth data benchmark --help)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``flashdepth data`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["benchmark"]:
        from datamodules.benchmark import main as benchmark_main

        return benchmark_main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse reports usage errors itself (status 2) and --help (0)
        return int(stop.code or 0)
    run = {"synth": _synth, "convert": _convert, "inspect": _inspect}
    try:
        return run[args.command](args, parser)
    except (FileNotFoundError, FileExistsError, ShardFormatError, ValueError) as error:
        print(f"flashdepth data {args.command}: error: {error}", file=sys.stderr)
        return 2


def _synth(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from datamodules.synthetic import brace_pattern, write_synthetic_shards

    started = time.perf_counter()
    shards = write_synthetic_shards(
        args.out,
        args.num_clips,
        args.frames,
        args.height,
        args.width,
        args.seed,
        clips_per_shard=args.clips_per_shard,
        split=args.split,
        first_index=args.first_index,
        overwrite=args.overwrite,
        progress=True,
    )
    print(
        f"wrote {args.num_clips} clips of {args.frames} frames at {args.height}x{args.width} "
        f"in {len(shards)} shards, {time.perf_counter() - started:.1f} s\n{brace_pattern(shards)}"
    )
    return 0


def _convert(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from datamodules.convert import CONVERTERS, convert, get_converter

    if args.list:
        for name, converter in sorted(CONVERTERS.items()):
            splits = ", ".join(converter.splits)
            print(f"{name:<16} {splits:<26} {converter.units}")
        return 0
    missing = [flag for flag, value in (("NAME", args.name), ("--root", args.root)) if not value]
    missing += [] if args.out else ["--out"]
    if missing:
        raise ValueError(f"convert needs {', '.join(missing)} (or --list); see --help")
    converter_class = get_converter(args.name)
    options = parse_options(args.option, converter_class)
    converter = converter_class(args.root, **options)
    report = convert(
        converter,
        args.out,
        args.split or converter_class.splits[0],
        clip_length=args.clip_length,
        stride=args.stride,
        clips_per_shard=args.clips_per_shard,
        overwrite=args.overwrite,
        progress=True,
    )
    print(report)
    return 0


def parse_options(pairs: list[str], converter_class: type) -> dict[str, str]:
    """``KEY=VALUE`` pairs → keyword arguments the converter's constructor accepts."""
    accepted = [
        name
        for name in inspect.signature(converter_class.__init__).parameters
        if name not in ("self", "root")
    ]
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in accepted:
            raise ValueError(
                f"--option {pair!r}: {converter_class.name} accepts "
                f"{', '.join(f'{a}=VALUE' for a in accepted) or 'no options'}"
            )
        options[key] = value
    return options


def _inspect(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from datamodules.shard_report import format_report, inspect_shards

    report = inspect_shards(args.shards, progress=sys.stderr.isatty())
    print(format_report(report))
    return 1 if report.errors else 0
