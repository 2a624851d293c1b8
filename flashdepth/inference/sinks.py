"""Depth sinks: per-frame files and videos, and the ``units.json`` that marks a video done.

Layout of one video's outputs (``name`` from :class:`~flashdepth.inference.frames.VideoInfo`,
``index`` the frame's index: 0-based for videos, the number in the file name for image
sequences)::

    {out}/{name}/exr/{index:06d}.exr       float32, one channel "Z"
    {out}/{name}/png16/{index:06d}.png     uint16, value = png / 100 (step PNG16_STEP)
    {out}/{name}/npy/{index:06d}.npy       float32 (H, W)
    {out}/{name}/npz/{index:06d}.npz       float32 (H, W) under the key "inverse_depth"
    {out}/{name}/{name}_depth.mp4          colour-mapped depth (see sinks_video)
    {out}/{name}/{name}_rgb_depth.mp4      RGB | depth side by side
    {out}/{name}/units.json                what the numbers are; written last

Every value is relative inverse depth on the ×100 scale (≈ 100 / metres for models trained
with our recipes; affine-invariant for Depth Anything V2's own weights). Each per-frame file
is written under a hidden temporary name in its folder and renamed (``os.replace``), so a
file under a final name is always complete. ``units.json`` is written (atomically, too) only
when a whole video has been written: its presence is what :func:`completed` checks.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from flashdepth.inference.frames import DepthSink, Frame, VideoInfo
from flashdepth.inference.sinks_video import DepthVideoSink, SideBySideSink

#: Inverse depth (×100 scale) of one 16-bit PNG step: value = png / 100, up to 655.35.
PNG16_STEP = 0.01
#: Output formats understood by :func:`make_sinks`.
FORMATS = ("exr", "png16", "npy", "npz", "mp4", "sbs")
UNITS_FILE = "units.json"
_VIDEO_SINKS = {"mp4": DepthVideoSink, "sbs": SideBySideSink}
_VIDEO_OPTIONS = ("crf", "preset", "time_constant_s")


class FormatSink(DepthSink, Protocol):
    """A depth sink that names its format (``units.json`` lists the formats written)."""

    file_format: str


def encode_png16(inverse_depth: np.ndarray) -> np.ndarray:
    """×100 inverse depth -> uint16 steps of :data:`PNG16_STEP`, clipped to [0, 65535]."""
    steps = np.round(np.nan_to_num(inverse_depth, nan=0.0) / PNG16_STEP)
    return np.clip(steps, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` with a hidden name beside ``path``, then rename it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_exr(path: Path, depth: np.ndarray) -> None:
    try:
        openexr = importlib.import_module("OpenEXR")
    except ImportError as error:
        raise ImportError("the exr format needs OpenEXR: pip install OpenEXR") from error
    header = {"compression": openexr.ZIP_COMPRESSION, "type": openexr.scanlineimage}
    openexr.File(header, {"Z": np.ascontiguousarray(depth, dtype=np.float32)}).write(str(path))


def _write_png16(path: Path, depth: np.ndarray) -> None:
    Image.fromarray(encode_png16(depth)).save(path, format="PNG")


def _write_npy(path: Path, depth: np.ndarray) -> None:
    with open(path, "wb") as file:
        np.save(file, depth.astype(np.float32))


def _write_npz(path: Path, depth: np.ndarray) -> None:
    with open(path, "wb") as file:
        np.savez_compressed(file, inverse_depth=depth.astype(np.float32))


#: Per-frame formats: file extension and writer.
_FRAME_WRITERS: dict[str, tuple[str, Callable[[Path, np.ndarray], None]]] = {
    "exr": (".exr", _write_exr),
    "png16": (".png", _write_png16),
    "npy": (".npy", _write_npy),
    "npz": (".npz", _write_npz),
}


class FrameFileSink:
    """One file per frame in ``{out}/{name}/{format}/``, each written atomically.

    Every file is complete once it has its name, so ``close`` and ``abort`` have nothing to
    rename: after an abort the frames written so far stay valid (the video is not marked
    complete: no ``units.json``).

    Args:
        file_format: ``"exr"``, ``"png16"``, ``"npy"`` or ``"npz"``.
    """

    def __init__(self, file_format: str) -> None:
        if file_format not in _FRAME_WRITERS:
            raise ValueError(f"per-frame formats are {sorted(_FRAME_WRITERS)}, got {file_format!r}")
        self.file_format = file_format
        self.extension, self._write = _FRAME_WRITERS[file_format]

    def open(self, info: VideoInfo, out_dir: Path) -> None:
        """Create the format's folder."""
        self.folder = Path(out_dir) / info.name / self.file_format
        self.folder.mkdir(parents=True, exist_ok=True)

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        """Write ``{index:06d}{extension}``."""
        path = self.folder / f"{frame.index:06d}{self.extension}"
        atomic_write(path, lambda temporary: self._write(temporary, depth))

    def close(self) -> None:
        """Nothing to finish: each file was complete when written."""

    def abort(self) -> None:
        """Nothing to undo: the files written so far are valid."""


def make_sinks(formats: Sequence[str], **options: Any) -> list[FormatSink]:
    """Sinks for the requested formats.

    Args:
        formats: Names from :data:`FORMATS`, each at most once.
        **options: For the mp4/sbs sinks: ``crf``, ``preset``, ``time_constant_s`` (see
            :class:`~flashdepth.inference.sinks_video.DepthVideoSink`).

    Returns:
        One sink per format, in the given order.
    """
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"unknown output format(s) {unknown}; choose from {', '.join(FORMATS)}")
    repeated = sorted({name for name in formats if list(formats).count(name) > 1})
    if repeated:
        raise ValueError(f"output format(s) {repeated} given twice; give each once")
    wrong = sorted(set(options) - set(_VIDEO_OPTIONS))
    if wrong:
        raise TypeError(f"unknown sink option(s) {wrong}; the options are {_VIDEO_OPTIONS}")
    return [
        _VIDEO_SINKS[name](**options) if name in _VIDEO_SINKS else FrameFileSink(name)
        for name in formats
    ]


def format_units(file_format: str, name: str) -> dict[str, Any]:
    """How to read back the values of one output format of video ``name``."""
    if file_format not in FORMATS:
        return {"written by": file_format}
    if file_format in _VIDEO_SINKS:
        suffix = _VIDEO_SINKS[file_format].suffix
        return {
            "file": f"{name}{suffix}.mp4",
            "content": "RGB | depth side by side" if file_format == "sbs" else "depth",
            "colour map": "turbo, near = red; range = running 2nd/98th percentiles "
            "(display only: colours are not invertible to values)",
            "codec": "H.264 yuv420p; odd sizes padded by one pixel (last row/column repeated)",
        }
    extension = _FRAME_WRITERS[file_format][0]
    record: dict[str, Any] = {"files": f"{file_format}/{{index:06d}}{extension}"}
    if file_format == "exr":
        record.update(channel="Z", dtype="float32", decode="value = Z")
    elif file_format == "png16":
        scale = round(1 / PNG16_STEP)
        record.update(
            dtype="uint16",
            scale=scale,
            decode=f"value = png / {scale}",
            step=PNG16_STEP,
            max=65535 * PNG16_STEP,
        )
    else:
        key = ', key "inverse_depth"' if file_format == "npz" else ""
        record.update(dtype="float32", decode=f"value = array{key}")
    return record


def write_units(
    folder: Path,
    info: VideoInfo,
    predictor: dict[str, Any],
    formats: Sequence[str],
    *,
    frames: int | None = None,
    depth_size: tuple[int, int] | None = None,
) -> Path:
    """Write ``{folder}/units.json`` atomically: the video is complete.

    Args:
        folder: ``{out}/{name}``.
        info: The input video.
        predictor: :meth:`~flashdepth.inference.predictor.StreamingPredictor.describe`.
        formats: The formats written.
        frames: Frames written (default: the count the input announced).
        depth_size: ``(H, W)`` of the written depth (default: the input's).

    Returns:
        The path of ``units.json``.
    """
    affine = predictor.get("model") == "DepthAnythingV2"
    height, width = depth_size or (info.height, info.width)
    record = {
        "quantity": "relative inverse depth (disparity); larger = nearer",
        "scale": "affine-invariant (Depth Anything V2 weights): unknown scale and shift"
        if affine
        else "x100: value ~= 100 / depth_in_metres for models trained with flashdepth "
        "recipes (released FlashDepth weights included)",
        "sky": "0 (infinitely far)",
        "index": "0-based frame of the video; image sequences: the number in the file name",
        "video": {
            "name": info.name,
            "source": info.source,
            "fps": None if info.fps is None else str(info.fps),
            "resolution": [width, height],
            "input_resolution": [info.width, info.height],
            "frames": info.num_frames if frames is None else frames,
            "has_audio": info.has_audio,
        },
        "model": predictor,
        "formats": {name: format_units(name, info.name) for name in formats},
    }
    path = Path(folder) / UNITS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temporary: temporary.write_text(json.dumps(record, indent=2)))
    return path


def completed(out_dir: Path, name: str, formats: Sequence[str] = ()) -> bool:
    """Whether video ``name`` was written completely under ``out_dir`` in every one of ``formats``.

    Completely means its ``units.json`` exists; with no ``formats`` given, in any format.
    """
    path = Path(out_dir) / name / UNITS_FILE
    if not path.is_file():
        return False
    if not formats:
        return True
    try:
        written = json.loads(path.read_text()).get("formats", {})
    except (OSError, ValueError):
        return False
    return all(file_format in written for file_format in formats)
