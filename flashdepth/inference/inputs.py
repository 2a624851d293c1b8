"""What the user typed, turned into inputs: files, folders, globs, list files, cameras, URLs.

How inputs expand: a video file is itself; a folder holding videos is those videos, sorted
by name; a folder holding images is one image sequence; a folder holding neither but
sub-folders of images is one sequence per sub-folder (a folder of shots); a quoted glob is
the videos and folders it matches, or one image sequence when it matches images; ``%04d``
patterns, camera devices (``/dev/video0``, ``0``) and URLs are passed as they are. A
``--list-file`` holds one input per line (blank lines and ``#`` comments skipped; relative
paths are relative to the list file's folder).

Everything here is checked before a model is loaded; a problem is a :class:`UsageError`
(``flashdepth stream`` exits with status 2).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from flashdepth.inference.sources import IMAGE_EXTENSIONS, STREAM_SCHEMES

#: Files a folder or glob expands to as videos (anything FFmpeg reads can be named directly).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mxf", ".mpg", ".mpeg")


class UsageError(Exception):
    """A problem with the command line, found before any video is streamed (exit 2)."""


def is_live(spec: str) -> bool:
    """A camera (``/dev/videoN``, an index) or a stream URL: no file to look at."""
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    return scheme in STREAM_SCHEMES or spec.isdigit() or spec.startswith("/dev/video")


def _suffixed(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """The files of ``folder`` with one of ``extensions``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def expand_input(spec: str) -> list[str]:
    """The input(s) ``spec`` stands for (see the module docstring); raises :class:`UsageError`."""
    path = Path(spec)
    if is_live(spec) or "%" in path.name or path.is_file():
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
                relative = not is_live(line) and not Path(line).is_absolute()
                specs = [*specs, str(list_file.parent / line) if relative else line]
    if not specs:
        raise UsageError("no input given; name videos, folders or cameras, or use --list-file")
    inputs: dict[str, str] = {}
    for spec in specs:
        for item in expand_input(spec):
            inputs.setdefault(os.path.abspath(item) if Path(item).exists() else item, item)
    return list(inputs.values())


def check_output_names(inputs: list[str], out: Path) -> None:
    """Refuse two inputs that would write to one ``{out}/{name}`` folder.

    This covers files and folders; patterns, cameras and URLs are named when opened and
    checked then.
    """
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
