r"""``flashdepth evaluate``: any method's depth against evaluation shards, tables and plots.

::

    flashdepth evaluate --gt data/shards/sintel --pred ours=depth/ours \
        --pred dav2=depth/dav2 --pred other=depth/other --kind other=depth \
        --protocol both --out eval/sintel

Everything that can be checked before scoring is checked first (shards readable, every
method's folder, format, units and every frame matched: a usage error, exit 2, naming
method, video and frame). Then videos are scored (cached per video under ``OUT/videos``: a
rerun skips finished ones; exit 1 if one fails) and ``OUT`` receives ``results.json``,
``table.md``, ``table.csv`` and ``plots/`` (see :mod:`flashdepth.evaluate`).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from flashdepth.evaluate import EvaluationError
from flashdepth.evaluate.ground_truth import GroundTruthVideo, list_videos
from flashdepth.evaluate.predictions import FORMATS, KINDS, PredictionOptions, plan_method
from flashdepth.evaluate.report import dataset_means, markdown, rank_table, write_csv, write_results
from flashdepth.evaluate.runner import VideoJob, run_jobs
from flashdepth.evaluate.scoring import METRICS, ProtocolSetting, max_depth_for

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_DESCRIPTION = """\
Score depth predictions of any method against evaluation shards: AbsRel, delta1, boundary F1
and flicker per video and per dataset, under the FlashDepth and/or Video Depth Anything
protocol. Writes OUT/results.json, OUT/table.md and OUT/table.csv (methods x datasets, ranks)
and OUT/plots (per-frame AbsRel/delta1 and scale drift per video). Videos are streamed (bounded
memory), scored in parallel, and cached in OUT/videos: a rerun resumes."""
_EPILOG = """\
predictions: FOLDER/<video>/<frames>, <video> = the first existing of <dataset>/<scene>,
<scene>, <dataset>/<key>, <key> of the shard sample (`flashdepth stream` and `predict`
layouts both match). Frame files (.exr Z channel, 16-bit .png, .npy, .npz), directly there or
in exr/ png16/ npy/ npz/ sub-folders, numbered by source frame id (or 0-based position).
Predictions are turned into inverse depth and resized to the ground truth bilinearly
(align_corners=True, as the FlashDepth paper's evaluation). A units.json of flashdepth
stream/predict sets --kind and the png16 scale. Exit status: 0 done, 1 a video failed,
2 usage error (nothing scored)."""


def _method(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not folder or not _METHOD_NAME.match(name):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=FOLDER (NAME: letters, digits, . _ + -), e.g. ours=depth/ours"
        )
    return name, Path(folder)


def _positive(kind: type) -> Callable[[str], int | float]:
    """A parser of positive ints or floats."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive {kind.__name__}")
        return value

    return parse


def _kind(text: str) -> tuple[str | None, str]:
    """``KIND`` (every method) or ``NAME=KIND`` (one method)."""
    name, _, kind = text.rpartition("=")
    if kind not in KINDS:
        raise argparse.ArgumentTypeError(f"{text!r}: give {' or '.join(KINDS)}, or NAME=KIND")
    return name or None, kind


def _png16_scale(text: str) -> tuple[str | None, float]:
    """``S`` (every method) or ``NAME=S`` (one method)."""
    name, _, scale = text.rpartition("=")
    return name or None, float(_positive(float)(scale))


def _for_method(values: list[tuple[str | None, object]], method: str, default: object) -> object:
    """The value given for ``method`` (``NAME=``), else for every method, else ``default``."""
    for wanted in (method, None):
        found = [value for name, value in values if name == wanted]
        if found:
            return found[-1]
    return default


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``flashdepth evaluate``."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a renamed option must not silently match a longer one
        prog="flashdepth evaluate",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--gt",
        action="append",
        required=True,
        metavar="SHARDS",
        help="evaluation shards: file, folder, glob or brace pattern (repeatable)",
    )
    add(
        "--pred",
        action="append",
        required=True,
        type=_method,
        metavar="NAME=FOLDER",
        help="a method's prediction folder (repeatable; table rows in this order)",
    )
    add("--out", required=True, type=Path, metavar="DIR", help="output folder")
    add(
        "--kind",
        action="append",
        default=[],
        type=_kind,
        metavar="[NAME=]KIND",
        help="what files hold where no units.json says: depth or inverse-depth (any scale); "
        "NAME= for one method (repeatable)",
    )
    add(
        "--format",
        default="auto",
        choices=("auto", *FORMATS),
        help="frame files to read (default: auto = exr, npy, npz, png16 in that order)",
    )
    add(
        "--png16-scale",
        action="append",
        default=[],
        type=_png16_scale,
        metavar="[NAME=]S",
        help="16-bit PNG value = png / S where no units.json says (default: 1); NAME= for "
        "one method (repeatable)",
    )
    add(
        "--protocol",
        default="flashdepth",
        choices=("flashdepth", "vda", "both"),
        help="FlashDepth (70 m cap, pooled), Video Depth Anything (per-dataset cap, per "
        "frame) or both (default: flashdepth)",
    )
    add(
        "--max-depth",
        type=_positive(float),
        metavar="M",
        help="depth cap in metres for every dataset (default: 70 for flashdepth; for vda "
        "KITTI 80, Bonn 10, ScanNet 10, NYUv2 10, Sintel 70)",
    )
    add(
        "--max-frames",
        type=_positive(int),
        metavar="N",
        help="score only the first N frames of each video (default: all)",
    )
    add(
        "--allow-missing",
        action="store_true",
        help="score missing frames as frames without prediction, ignore extra files (counted)",
    )
    add(
        "--workers",
        type=_positive(int),
        default=1,
        metavar="K",
        help="videos scored in parallel processes (default: 1)",
    )
    add(
        "--chunk-frames",
        type=_positive(int),
        default=8,
        metavar="N",
        help="frames held in memory at once per video (default: 8)",
    )
    add("--no-plots", action="store_true", help="skip the PNG plots")
    add("--debug", action="store_true", help="show tracebacks")
    return parser


def _settings(
    video: GroundTruthVideo, protocols: list[str], max_depth: float | None
) -> tuple[ProtocolSetting, ...]:
    return tuple(ProtocolSetting(p, max_depth_for(p, video.dataset, max_depth)) for p in protocols)


def _plan(options: argparse.Namespace, protocols: list[str]) -> list[VideoJob]:
    """Every (method, video) job; raises :class:`EvaluationError` for any unmatched frame."""
    names = [name for name, _ in options.pred]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise EvaluationError(f"method name(s) {repeated} given twice in --pred; name each once")
    unknown = sorted({n for n, _ in options.kind + options.png16_scale if n and n not in names})
    if unknown:
        raise EvaluationError(f"--kind/--png16-scale name method(s) {unknown} not in --pred")
    videos = list_videos(options.gt)
    settings = {video.key: _settings(video, protocols, options.max_depth) for video in videos}
    jobs = []
    for name, folder in options.pred:
        prediction_options = PredictionOptions(
            _for_method(options.kind, name, None),
            options.format,
            _for_method(options.png16_scale, name, 1.0),
            options.max_frames,
            options.allow_missing,
        )
        for video, plan in zip(
            videos, plan_method(name, folder, videos, prediction_options), strict=True
        ):
            cache = options.out / "videos" / name / f"{video.key}.json"
            jobs.append(
                VideoJob(name, video, plan, settings[video.key], options.chunk_frames, cache)
            )
    return jobs


def _per_video(record: dict) -> dict:
    """A video's record without its per-frame values (those stay in ``OUT/videos``)."""
    dropped = ("method", "key", "fingerprint", "frame_ids")
    kept = {k: v for k, v in record.items() if k not in dropped}
    kept["per_frame"] = f"videos/{record['method']}/{record['key']}.json"
    kept["protocols"] = {
        protocol: {k: v for k, v in scores.items() if k != "frames"}
        for protocol, scores in record["protocols"].items()
    }
    return kept


def _write_outputs(
    options: argparse.Namespace,
    argv: list[str],
    jobs: list[VideoJob],
    records: list[dict],
    protocols: list[str],
) -> str:
    """``results.json``, ``table.md``, ``table.csv`` and the plots; returns the Markdown."""
    by_method: dict[str, list[dict]] = {}
    for record in records:
        by_method.setdefault(record["method"], []).append(record)
    summary = {p: {m: dataset_means(rs, p) for m, rs in by_method.items()} for p in protocols}
    caps: dict[str, dict[str, float]] = {p: {} for p in protocols}
    for job in jobs:
        for setting in job.settings:
            caps[setting.protocol][job.video.dataset] = setting.max_depth
    notes = []
    for method, method_records in by_method.items():
        missing = sum(r["missing_frames"] for r in method_records)
        extra = sum(r["extra_files"] for r in method_records)
        if missing or extra:
            notes.append(
                f"- {method}: {missing} frame(s) without prediction scored as such, {extra} "
                "extra file(s) ignored (--allow-missing)."
            )
    if options.max_frames is not None:
        notes.append(f"- Only the first {options.max_frames} frames of each video were scored.")
    results = {
        "command": shlex.join(["flashdepth", "evaluate", *argv]),
        "ground_truth": options.gt,
        "protocols": protocols,
        "max_depth_m": caps,
        "methods": {
            name: {
                "folder": str(folder),
                "datasets": {p: summary[p][name] for p in protocols},
                "videos": {r["key"]: _per_video(r) for r in by_method[name]},
            }
            for name, folder in options.pred
        },
        "ranks": {
            p: {
                metric: {row["method"]: row for row in rank_table(summary[p], metric)}
                for metric in METRICS
            }
            for p in protocols
        },
    }
    write_results(options.out / "results.json", results)
    table = markdown(summary, caps, notes)
    (options.out / "table.md").write_text(table)
    write_csv(options.out / "table.csv", summary)
    if not options.no_plots:
        from flashdepth.evaluate.plots import write_plots  # Matplotlib loads only when plotting

        write_plots(options.out, by_method, protocols)
    return table


def main(args: list[str] | None = None) -> int:
    """Run ``flashdepth evaluate``.

    Args:
        args: The arguments after ``flashdepth evaluate``; ``None`` reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 done, 1 a video failed (rerun to resume), 2 usage error.
    """
    argv = sys.argv[1:] if args is None else list(args)
    try:
        options = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error
        return int(exit_.code or 0)
    protocols = ["flashdepth", "vda"] if options.protocol == "both" else [options.protocol]
    try:
        jobs = _plan(options, protocols)
    except EvaluationError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        records = run_jobs(jobs, options.workers, log=lambda line: print(line, file=sys.stderr))
        options.out.mkdir(parents=True, exist_ok=True)
        table = _write_outputs(options, argv, jobs, records, protocols)
    except Exception as error:
        if options.debug:
            raise
        detail = (
            str(error) if isinstance(error, EvaluationError) else f"{type(error).__name__}: {error}"
        )
        print(
            f"error: {detail}\nThe videos scored so far are cached under {options.out}/videos: "
            "fix the problem and rerun the same command to resume (--debug shows the traceback).",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(table)
    print(
        f"written: {options.out}/results.json, table.md, table.csv"
        + ("" if options.no_plots else ", plots/")
    )
    return EXIT_OK
