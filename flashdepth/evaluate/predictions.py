"""Prediction folders: which file holds which ground-truth frame, and how to read it.

A method's predictions are per-frame files in one folder per video. For a ground-truth video
(one shard sample, see :mod:`~flashdepth.evaluate.ground_truth`) the first existing folder of
``ROOT/<dataset>/<scene>``, ``ROOT/<scene>``, ``ROOT/<dataset>/<key>``, ``ROOT/<key>`` is its
folder (``flashdepth stream`` writes ``ROOT/<name>``, ``flashdepth predict`` writes
``ROOT/<dataset>/<scene>``); ``ROOT/<scene>`` is skipped when two datasets share the scene
name. Samples of one long scene (cut at 1000 frames) share the scene's folder.

Inside the folder, frames are files ``*.exr`` (float32, channel ``Z``, else the only channel),
``*.png`` (16-bit, value = png / ``png16_scale``), ``*.npy`` (2-D float array) or ``*.npz``
(the only array, else the one named ``inverse_depth`` or ``depth`` by ``kind``), directly in
it or in a sub-folder named after the format (``exr/``, ``png16/``, ``npy/``, ``npz/``: the
``flashdepth stream`` layout). ``auto`` takes the most precise present: exr, npy, npz, png16.
A file's number is the last run of digits in its name; it is the source frame id
(``frame_ids`` of the sample), or, when that matches fewer files and the folder holds one
video, the 0-based position in the video (predictions of a video file).

Values are depth or relative inverse depth (``kind``); a ``units.json`` written by
``flashdepth stream`` (in the video folder) or ``flashdepth predict`` (in ROOT) says inverse
depth on the x100 scale (png16 scale 100) and overrides the flags. Depth becomes inverse
depth (1/depth; +inf -> 0) at the file's own resolution. Missing frames and files that match
no frame are errors, unless ``allow_missing`` (missing frames are then scored as frames
without prediction, extra files ignored, and both are counted).
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flashdepth.evaluate import EvaluationError
from flashdepth.evaluate.ground_truth import GroundTruthVideo
from flashdepth.inference.sinks import PNG16_STEP, UNITS_FILE

#: Per-frame formats, most precise first (the order ``auto`` prefers).
FORMATS = ("exr", "npy", "npz", "png16")
KINDS = ("inverse-depth", "depth")
_EXTENSIONS = {"exr": ".exr", "npy": ".npy", "npz": ".npz", "png16": ".png"}
_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits


@dataclass(frozen=True)
class FrameReader:
    """Reads one prediction file as relative inverse depth.

    Attributes:
        file_format: ``"exr"``, ``"npy"``, ``"npz"`` or ``"png16"``.
        kind: ``"inverse-depth"`` or ``"depth"`` (any units: scores are scale-invariant).
        png16_scale: 16-bit PNG value = png / png16_scale.
    """

    file_format: str
    kind: str
    png16_scale: float = 1.0

    def read(self, path: Path) -> np.ndarray:
        """``(h, w)`` float32 relative inverse depth of one file, at the file's resolution.

        Raises:
            EvaluationError: Naming the file when it cannot be read, is not 2-D, or holds
                values that are not a depth (NaN, <= 0) or not finite inverse depth.
        """
        try:
            values = getattr(self, f"_read_{self.file_format}")(path)
        except EvaluationError:
            raise
        except Exception as error:
            raise EvaluationError(f"cannot read prediction {path} ({error})") from error
        values = np.squeeze(np.asarray(values, dtype=np.float32))
        if values.ndim != 2:
            raise EvaluationError(f"prediction {path} has shape {values.shape}; expected (H, W)")
        if self.kind == "depth":
            bad = int(np.count_nonzero(~(values > 0)))
            what = "depth NaN, zero or negative"
        else:
            bad = int(np.count_nonzero(~np.isfinite(values)))
            what = "inverse depth NaN or infinite"
        if bad:
            raise EvaluationError(
                f"prediction {path}: {bad} pixel(s) with {what}; predictions must be dense "
                f"(fill holes, e.g. with the nearest value), or check --kind (now {self.kind})"
            )
        return np.reciprocal(values) if self.kind == "depth" else values

    def _read_exr(self, path: Path) -> np.ndarray:
        openexr = importlib.import_module("OpenEXR")
        with openexr.File(str(path), separate_channels=True) as exr:
            channels = {name: channel.pixels for name, channel in exr.channels().items()}
        if "Z" in channels or len(channels) == 1:
            return channels.get("Z", next(iter(channels.values())))
        raise EvaluationError(
            f"EXR prediction {path} has channels {sorted(channels)}; write depth in channel "
            "'Z' (or as the only channel)"
        )

    def _read_png16(self, path: Path) -> np.ndarray:
        with Image.open(path) as image:
            if image.mode not in ("I;16", "I;16B", "I"):
                raise EvaluationError(
                    f"prediction {path} is a {image.mode} PNG, not 16-bit; write depth as "
                    "16-bit PNG (or exr/npy/npz)"
                )
            return np.asarray(image).astype(np.float32) / self.png16_scale

    def _read_npy(self, path: Path) -> np.ndarray:
        return np.load(path, allow_pickle=False)

    def _read_npz(self, path: Path) -> np.ndarray:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            name = {"inverse-depth": "inverse_depth", "depth": "depth"}[self.kind]
            if len(names) == 1 or name in names:
                return archive[names[0] if len(names) == 1 else name]
        raise EvaluationError(
            f"npz prediction {path} holds {names}; store one array, or name it {name!r}"
        )


@dataclass(frozen=True)
class PredictionVideo:
    """The prediction files of one method for one ground-truth video.

    Attributes:
        folder: The folder the files are in (the method's folder when the video has none).
        reader: How to read them (``None`` when the video has no folder, ``allow_missing``).
        files: The file of each evaluated frame (``None``: missing, with ``allow_missing``).
        extra_files: Files of the folder that match no frame (ignored, ``allow_missing``).
        numbering: ``"frame id"``, ``"position"`` (what the numbers in the names are) or
            ``"none"`` (no folder).
    """

    folder: Path
    reader: FrameReader | None
    files: tuple[Path | None, ...]
    extra_files: int
    numbering: str

    @property
    def missing_frames(self) -> int:
        """Evaluated frames without a prediction file."""
        return sum(path is None for path in self.files)


@dataclass(frozen=True)
class PredictionOptions:
    """What the command line says about prediction folders.

    Attributes:
        kind: What files hold in folders without a ``units.json`` (``None``: must be stated).
        file_format: ``"auto"`` or one of :data:`FORMATS`.
        png16_scale: 16-bit PNG value = png / scale in folders without ``units.json``.
        max_frames: Evaluate only the first frames of each video (``None``: all).
        allow_missing: Score missing frames as frames without prediction; ignore extra files.
    """

    kind: str | None = None
    file_format: str = "auto"
    png16_scale: float = 1.0
    max_frames: int | None = None
    allow_missing: bool = False


def evaluated_frames(video: GroundTruthVideo, max_frames: int | None) -> int:
    """How many of the video's frames are scored (the first ones)."""
    total = len(video.frame_ids)
    return total if max_frames is None else min(total, max_frames)


def _frame_files(place: Path, extension: str) -> list[Path]:
    """The frame files of one format in a folder (hidden and temporary files left out)."""
    if not place.is_dir():
        return []
    return sorted(
        p for p in place.iterdir() if p.suffix.lower() == extension and not p.name.startswith(".")
    )


def _numbered(method: str, files: list[Path]) -> dict[int, Path]:
    """Frame number -> file; a name without digits is frame 0 only when it is alone."""
    numbered: dict[int, Path] = {}
    for path in files:
        match = _FRAME_NUMBER.search(path.stem)
        if match is None and len(files) > 1:
            raise EvaluationError(
                f"method {method!r}: prediction {path} has no frame number in its name; "
                "rename it (e.g. 000012.png) or move it out of the folder"
            )
        number = int(match.group(1)) if match else 0
        if number in numbered:
            raise EvaluationError(
                f"method {method!r}: predictions {numbered[number]} and {path} both have frame "
                f"number {number}; keep one"
            )
        numbered[number] = path
    return numbered


def _reader(
    method: str, root: Path, folder: Path, options: PredictionOptions
) -> tuple[FrameReader, Path]:
    """The reader of one video folder's files and where they are.

    The reader follows the format (see the module docstring), and the units from a
    ``units.json`` of ours, else from the flags.
    """
    formats = {}
    for file_format in FORMATS:
        for place in (folder / file_format, folder):
            if _frame_files(place, _EXTENSIONS[file_format]):
                formats.setdefault(file_format, place)
    wanted = [f for f in FORMATS if f in formats and options.file_format in ("auto", f)]
    if not wanted:
        present = ", ".join(sorted(formats)) or "none"
        raise EvaluationError(
            f"method {method!r}: {folder} holds no {options.file_format} prediction files "
            f"(formats present: {present}); see `flashdepth evaluate -h` for the layout"
        )
    ours = [p / UNITS_FILE for p in (folder, root) if (p / UNITS_FILE).is_file()]
    if ours and "inverse depth" in json.loads(ours[0].read_text()).get("quantity", ""):
        return FrameReader(wanted[0], "inverse-depth", round(1 / PNG16_STEP)), formats[wanted[0]]
    if options.kind is None:
        raise EvaluationError(
            f"method {method!r}: {folder} has no {UNITS_FILE} saying what its files hold (a "
            "`flashdepth stream` video has one once complete); pass --kind depth or "
            "--kind inverse-depth"
        )
    return FrameReader(wanted[0], options.kind, options.png16_scale), formats[wanted[0]]


def _video_folder(root: Path, video: GroundTruthVideo, shared_scene: bool) -> Path | None:
    """The first existing folder of the matching rule (see the module docstring)."""
    candidates = [root / video.dataset / video.scene, root / video.scene]
    candidates += [root / video.dataset / video.key, root / video.key]
    if shared_scene:
        candidates.remove(root / video.scene)
    return next((path for path in candidates if path.is_dir()), None)


def _assign(
    method: str,
    members: list[GroundTruthVideo],
    place: Path,
    reader: FrameReader,
    options: PredictionOptions,
) -> tuple[list[tuple[Path | None, ...]], int, str]:
    """The file of every evaluated frame of the videos sharing one folder.

    Returns:
        ``(files per video, extra files, numbering)``.
    """
    numbered = _numbered(method, _frame_files(place, _EXTENSIONS[reader.file_format]))
    ids = {frame for video in members for frame in video.frame_ids}
    expected: set[int] = ids
    numbering = "frame id"
    if len(members) == 1:
        positions = set(range(len(members[0].frame_ids)))
        if len(numbered.keys() & positions) > len(numbered.keys() & ids):
            expected, numbering = positions, "position"
    extra = sorted(numbered.keys() - expected)
    if extra and not options.allow_missing:
        raise EvaluationError(
            f"method {method!r}: {len(extra)} prediction file(s) in {place} match no frame of "
            f"{', '.join(v.describe() for v in members)}, e.g. {numbered[extra[0]].name} "
            f"({numbering} {extra[0]}); remove them, or pass --allow-missing to ignore "
            "them"
        )
    assigned = []
    for video in members:
        count = evaluated_frames(video, options.max_frames)
        keys = range(count) if numbering == "position" else video.frame_ids[:count]
        files = tuple(numbered.get(key) for key in keys)
        missing = [t for t, path in enumerate(files) if path is None]
        if missing and not options.allow_missing:
            t = missing[0]
            raise EvaluationError(
                f"method {method!r}, video {video.describe()}: no prediction for frame {t} "
                f"({numbering} {keys[t]}) in {place}; {len(missing)} of {count} frames "
                "missing. Write them, or pass --allow-missing to score them as frames without "
                "prediction"
            )
        assigned.append(files)
    return assigned, len(extra), numbering


def plan_method(
    method: str, root: Path, videos: list[GroundTruthVideo], options: PredictionOptions
) -> list[PredictionVideo]:
    """Match every ground-truth video to its prediction files (see the module docstring).

    Args:
        method: Method name, for messages.
        root: The method's prediction folder.
        videos: The ground-truth videos.
        options: Format, units and what to do with missing frames.

    Returns:
        One :class:`PredictionVideo` per video, in order.

    Raises:
        EvaluationError: Naming method, video and frame or file, when a video folder is
            missing, a frame has no file, a file matches no frame (both unless
            ``allow_missing``), or files are unreadable by name or format.
    """
    if not root.is_dir():
        raise EvaluationError(f"method {method!r}: prediction folder {root} does not exist")
    datasets_of: dict[str, set[str]] = {}
    for video in videos:
        datasets_of.setdefault(video.scene, set()).add(video.dataset)
    groups: dict[Path, list[GroundTruthVideo]] = {}
    plans: dict[str, PredictionVideo] = {}
    for video in videos:
        folder = _video_folder(root, video, len(datasets_of[video.scene]) > 1)
        if folder is not None:
            groups.setdefault(folder, []).append(video)
            continue
        if not options.allow_missing:
            raise EvaluationError(
                f"method {method!r} has no folder for video {video.describe()}: looked for "
                f"{root}/[{video.dataset}/]{video.scene} and {root}/[{video.dataset}/]"
                f"{video.key}. Write its predictions there, or pass --allow-missing"
            )
        nothing = (None,) * evaluated_frames(video, options.max_frames)
        plans[video.key] = PredictionVideo(root, None, nothing, 0, "none")
    for folder, members in groups.items():
        reader, place = _reader(method, root, folder, options)
        assigned, extra, numbering = _assign(method, members, place, reader, options)
        for index, (video, files) in enumerate(zip(members, assigned, strict=True)):
            # extra files of a shared folder are counted once, with its first video
            extra_files = extra if index == 0 else 0
            plans[video.key] = PredictionVideo(place, reader, files, extra_files, numbering)
    return [plans[video.key] for video in videos]
