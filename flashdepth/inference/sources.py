"""Frame sources: video files, image sequences, cameras and stream URLs, decoded ahead.

:func:`open_source` turns what the user typed into a source:

* a video file (anything FFmpeg reads, through PyAV);
* an image-sequence folder, a printf pattern (``shot.%04d.exr``) or a glob (``shot.*.png``):
  PNG, JPEG, TIFF (8 or 16 bit, decoded exactly by FFmpeg: ``uint8``/``uint16`` frames) and
  EXR (``R``, ``G``, ``B`` or ``Y`` channels as ``float32``, values as stored), sorted by the
  last number in each file name; a gap in the numbers or a frame of another size is an error
  naming the file(s), raised before anything is decoded;
* a camera: ``/dev/video0`` or an index ``"0"`` (Linux v4l2, macOS avfoundation);
* a stream URL: ``rtsp://``, ``http(s)://``, ``udp://``, ``rtmp://``, ``srt://``.

Every source decodes on a background thread into a bounded buffer of ``queue_size`` frames
(a slot is taken before a frame is decoded, so the thread never holds more), whatever the
length of the video. An error in the decoder thread is raised in the consumer as
:class:`SourceError` naming the input, after the frames decoded before it.

**How a video ends.** After the last frame the source records :attr:`frames_delivered`.
When the container announced more frames than it delivered and FFmpeg reached the end of
the data without an error (a file cut short, e.g. an interrupted copy), the source sets
:attr:`BufferedSource.ended_early` and does not raise: the caller reports "ended after N of
M frames". A decoder error raises :class:`SourceError` (after the good frames) and is kept
in :attr:`BufferedSource.error`.
"""

from __future__ import annotations

import importlib
import platform
import queue
import re
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from types import ModuleType

import av
import numpy as np
from PIL import Image

from flashdepth.inference.frames import Frame, VideoInfo

#: URL schemes opened as network streams.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
#: Seconds to wait for a stream or camera to open, and for each read.
TIMEOUT_S = 10.0
#: File extensions read as image-sequence frames.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".exr")
#: The frame number of a file: the last run of digits in its stem.
_FRAME_NUMBER = re.compile(r"(\d+)(?!.*\d)")


class SourceError(Exception):
    """An input that cannot be read; the message names it and says what to do."""


class _End:
    """Marker put on the buffer after the last frame."""


class BufferedSource:
    """Frames of one video decoded ahead on a thread, at most ``queue_size`` at a time.

    Also the way to stream your own frames: pass any iterable of ``(H, W, 3)`` arrays or
    :class:`Frame`. A source is iterated once; :meth:`close` stops the thread.

    Args:
        info: The video.
        frames: Its frames, consumed lazily on the decoder thread.
        queue_size: Frames decoded ahead at most.
        release: Called once decoding ends, or by :meth:`close` when it never started
            (closes the input).

    Attributes:
        frames_delivered: Frames handed to the consumer so far.
        ended_early: The input ended cleanly before the frame count it announced.
        error: The decoder error that ended the video, if any.
        max_buffered: Most frames ever decoded and not yet consumed (≤ ``queue_size``).
        last_ready_s: ``time.perf_counter()`` when the last delivered frame left the decoder.
    """

    def __init__(
        self,
        info: VideoInfo,
        frames: Iterable[np.ndarray | Frame],
        queue_size: int = 8,
        release: Callable[[], None] | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.info = info
        self.queue_size = queue_size
        self.frames_delivered = 0
        self.ended_early = False
        self.error: SourceError | None = None
        self.max_buffered = 0
        self.last_ready_s: float | None = None
        self._frames = frames
        self._release = release
        self._slots = threading.Semaphore(queue_size)
        self._buffer: queue.SimpleQueue = queue.SimpleQueue()
        self._buffered = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pending(self) -> int:
        """Frames decoded and waiting to be consumed."""
        return self._buffered

    def _numbered(self) -> Iterator[Frame]:
        """The frames as :class:`Frame` (closing it closes the wrapped generator)."""
        for index, item in enumerate(self._frames):
            yield item if isinstance(item, Frame) else Frame(index, item)

    def _take_slot(self) -> bool:
        """Wait for room in the buffer; ``False`` once the source is closed."""
        while not self._stop.is_set():
            if self._slots.acquire(timeout=0.05):
                return True
        return False

    def _run(self) -> None:
        """Decoder thread: take a slot, decode one frame, buffer it; end with a marker."""
        frames = self._numbered()
        try:
            while self._take_slot():
                try:
                    frame = next(frames)
                except StopIteration:
                    self._buffer.put(_End())
                    return
                with self._lock:
                    self._buffered += 1
                    self.max_buffered = max(self.max_buffered, self._buffered)
                self._buffer.put((frame, time.perf_counter()))
        except Exception as error:  # handed to the consumer, raised there
            self._buffer.put(error)
        finally:
            frames.close()
            if isinstance(self._frames, Generator):
                self._frames.close()  # a generator source ends with its input closed
            if self._release is not None:
                self._release()

    def __iter__(self) -> Iterator[Frame]:
        """Yield the frames in order; raise :class:`SourceError` for a decoder error."""
        if self._thread is not None:
            raise RuntimeError(f"{self.info.source} is already being read; open it again")
        self._thread = threading.Thread(target=self._run, name=self.info.name, daemon=True)
        self._thread.start()
        while not isinstance(item := self._buffer.get(), _End):
            if isinstance(item, Exception):
                self.error = (
                    item
                    if isinstance(item, SourceError)
                    else SourceError(
                        f"decoding {self.info.source} failed after {self.frames_delivered} "
                        f"frame(s): {item}; the frames before the error are valid"
                    )
                )
                raise self.error from item
            frame, self.last_ready_s = item
            with self._lock:
                self._buffered -= 1
            self._slots.release()
            self.frames_delivered += 1
            yield frame
        expected = self.info.num_frames
        self.ended_early = expected is not None and self.frames_delivered < expected

    def close(self) -> None:
        """Stop decoding and release the input (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=TIMEOUT_S)
        elif self._release is not None:
            self._release()  # the thread, had it run, would have released the input

    def __enter__(self) -> BufferedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def video_source(
    container: av.container.InputContainer, name: str, source: str, live: bool, queue_size: int
) -> BufferedSource:
    """A source over an opened PyAV input (file, camera or URL).

    It has the exact fps as a Fraction, the frame count from the stream header (``None`` when
    live or not stated), and audio or not.
    """
    if not container.streams.video:
        container.close()
        raise SourceError(f"{source} has no video stream; give a video file")
    stream = container.streams.video[0]
    codec = stream.codec_context
    fps = stream.average_rate or stream.guessed_rate
    info = VideoInfo(name, source, codec.width, codec.height, Fraction(fps) if fps else None)
    info.num_frames = None if live or not stream.frames else int(stream.frames)
    info.has_audio, info.live = bool(container.streams.audio), live
    info.extra = {"codec": codec.name, "pix_fmt": codec.pix_fmt}
    return BufferedSource(info, _video_frames(container), queue_size, container.close)


def _video_frames(container: av.container.InputContainer) -> Iterator[Frame]:
    """Decoded uint8 RGB frames with their presentation times (the source closes the input)."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    for index, frame in enumerate(container.decode(stream)):
        yield Frame(index, frame.to_ndarray(format="rgb24"), frame.time)


def _sequence_frames(files: list[tuple[int, Path]], fps: Fraction | None) -> Iterator[Frame]:
    """Image files as frames numbered as in their names (time from ``fps`` when given)."""
    for number, path in files:
        yield Frame(number, read_image(path), None if fps is None else float(number / fps))


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn any error while reading ``path`` into a :class:`SourceError` naming it."""
    try:
        yield
    except SourceError:
        raise
    except Exception as error:
        raise SourceError(f"cannot read image {path} ({error}); replace or re-render it") from error


def read_image(path: Path) -> np.ndarray:
    """One frame: ``(H, W, 3)`` ``uint8``, ``uint16`` (more than 8 bits) or ``float32`` (EXR)."""
    with _reading(path):
        if path.suffix.lower() == ".exr":
            return _read_exr(path)
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            deep = frame.format.components[0].bits > 8
            return frame.to_ndarray(format="rgb48le" if deep else "rgb24")


def _openexr() -> ModuleType:
    """OpenEXR, imported when an EXR is met (an optional dependency)."""
    try:
        return importlib.import_module("OpenEXR")
    except ImportError as error:
        raise SourceError("reading EXR frames needs OpenEXR: pip install OpenEXR") from error


def _read_exr(path: Path) -> np.ndarray:
    """R, G, B (or Y, repeated) of an EXR as float32, values as stored."""
    with _openexr().File(str(path), separate_channels=True) as exr:
        channels = {name: channel.pixels for name, channel in exr.channels().items()}
    if all(name in channels for name in "RGB"):
        return np.stack([channels[name] for name in "RGB"], axis=-1).astype(np.float32)
    if "Y" in channels:
        return np.repeat(channels["Y"][..., None], 3, axis=-1).astype(np.float32)
    raise SourceError(
        f"EXR {path} has no R, G, B or Y channel (it has {sorted(channels)}); "
        "write the colour image with R, G, B channels"
    )


def _image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the file header."""
    with _reading(path):
        if path.suffix.lower() == ".exr":
            with _openexr().File(str(path), header_only=True) as exr:
                low, high = exr.header()["dataWindow"]
            return int(high[1] - low[1] + 1), int(high[0] - low[0] + 1)
        with Image.open(path) as image:
            return image.height, image.width


def find_sequence(spec: str, fps: Fraction | None) -> tuple[list[tuple[int, Path]], VideoInfo]:
    """The numbered frames of a folder, a ``%04d`` pattern, a glob or a single image.

    Raises:
        SourceError: No images; several extensions in a folder; a file without a number;
            two files with one number; a gap in the numbers; frames of different sizes.
    """
    path = Path(spec)
    if path.is_dir():
        candidates = [file for file in path.iterdir() if file.suffix.lower() in IMAGE_EXTENSIONS]
        extensions = sorted({file.suffix.lower() for file in candidates})
        if len(extensions) > 1:
            raise SourceError(
                f"{path} holds images of several types {extensions}; give a pattern such as "
                f"{path / ('*' + extensions[0])}"
            )
        name = path.name
    else:
        glob = re.sub(r"%0?\d*d", "*", path.name)
        candidates = [file for file in path.parent.glob(glob) if file.is_file()]
        name = re.sub(r"[*?\[\]]", "", Path(glob).stem).strip("._- ") or path.parent.name
    if not candidates:
        raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found for {spec}")
    numbered: dict[int, Path] = {}
    for file in candidates:
        match = _FRAME_NUMBER.search(file.stem)
        if match is None and len(candidates) > 1:
            raise SourceError(f"{file} has no frame number in its name; rename or move it")
        number = int(match.group(1)) if match else 0
        if number in numbered:
            raise SourceError(
                f"{numbered[number]} and {file} both have frame number {number}; "
                "give a pattern that matches one sequence"
            )
        numbered[number] = file
    numbers = sorted(numbered)
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        raise SourceError(
            f"image sequence {spec} has no frame number {missing[:10]} between {numbers[0]} "
            f"and {numbers[-1]}; render or copy the missing frame(s)"
        )
    files = [(number, numbered[number]) for number in numbers]
    height, width = _image_size(files[0][1])
    odd = [str(file) for _, file in files[1:] if _image_size(file) != (height, width)]
    if odd:
        raise SourceError(
            f"image sequence {spec}: {', '.join(odd[:5])} not {width}x{height} like "
            f"{files[0][1].name}; all frames need one size"
        )
    info = VideoInfo(name, spec, width, height, fps, len(files), extra={"first": numbers[0]})
    return files, info


def open_source(spec: str, fps: Fraction | None = None, *, queue_size: int = 8) -> BufferedSource:
    """Open a video file, image sequence, camera or stream URL.

    Args:
        spec: A path, a folder, a ``%04d``/glob pattern, ``/dev/videoN``, a camera index or
            a URL.
        fps: Frame rate of an image sequence (ignored for videos, which state their own).
        queue_size: Frames decoded ahead at most (memory is constant for any length).

    Returns:
        The source, not yet decoding (iteration starts the thread).

    Raises:
        SourceError: The input does not exist, is not a video or image sequence, or the
            camera or stream cannot be opened; the message says what to do.
    """
    scheme = spec.split("://", 1)[0].lower() if "://" in spec else ""
    if scheme in STREAM_SCHEMES or spec.isdigit() or spec.startswith("/dev/video"):
        return _open_live(spec, queue_size)
    path = Path(spec)
    is_pattern = any(char in path.name for char in "*?[%")
    if not is_pattern and not path.exists():
        raise SourceError(
            f"input {spec} does not exist; give a video file, an image folder, a pattern "
            "such as shot.%04d.exr, a camera (/dev/video0) or a URL"
        )
    if is_pattern or path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS:
        files, info = find_sequence(spec, fps)
        return BufferedSource(info, _sequence_frames(files, fps), queue_size)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as error:
        raise SourceError(
            f"{path} is not a readable video ({error}); if it is a cut-short mp4 without its "
            "index (moov atom), re-copy or re-export it, otherwise give a video FFmpeg reads"
        ) from error
    return video_source(container, path.stem, str(path), False, queue_size)


def _open_live(spec: str, queue_size: int) -> BufferedSource:
    """A source over a camera or a stream URL.

    A camera is ``/dev/videoN`` or an index (v4l2 on Linux, avfoundation on macOS); a stream
    URL is live unless the container announces a frame count.
    """
    options, input_format = {}, None
    if "://" in spec:
        device = spec
        options = {"rtsp_transport": "tcp"} if spec.lower().startswith("rtsp") else {}
        advice = "check the address, that the stream is running and that it can be reached"
    elif platform.system() in ("Linux", "Darwin"):
        linux = platform.system() == "Linux"
        index = spec.removeprefix("/dev/video")
        device = (f"/dev/video{index}" if linux else index) if spec.isdigit() else spec
        input_format = "v4l2" if linux else "avfoundation"
        advice = (
            "check that the camera is connected, that you may read it (Linux: the 'video' "
            "group; ls /dev/video*) and that no other program holds it"
        )
    else:
        raise SourceError(
            f"camera {spec}: cameras by index work on Linux and macOS; here give a stream "
            "URL, or read frames with your own code into a BufferedSource"
        )
    try:
        container = av.open(device, format=input_format, options=options, timeout=TIMEOUT_S)
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise SourceError(f"cannot open {device} ({error}); {advice}") from error
    stream = container.streams.video[0] if container.streams.video else None
    live = stream is None or not stream.frames
    name = Path(device.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]).stem or "stream"
    return video_source(container, name, spec, live, queue_size)
