"""Test inputs for the inference tests, written on the fly: tiny videos and image sequences.

* :func:`write_video`: an H.264 mp4 (or mov) of a colour ramp whose blue changes each
  frame, at an exact rate (30000/1001 by default), optionally with an AAC (mp4) or PCM (mov)
  audio track as long as the video; the index (moov) first, so a cut-short copy still
  plays, unless asked otherwise;
* :func:`truncate`: the first part of a file (a damaged download);
* :func:`ramp_frame`: the frame ``index`` of that ramp, to compare decoded frames with;
* :func:`write_png16`, :func:`write_exr`, :func:`write_png`: single images for sequences.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import OpenEXR
from PIL import Image

NTSC = Fraction(30000, 1001)
AUDIO_RATE = 48_000


def ramp_frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """``(H, W, 3)`` uint8: red ramps left to right, green top to bottom, blue = 8 * index."""
    red = np.linspace(16, 235, width, dtype=np.float32)[None, :].repeat(height, 0)
    green = np.linspace(16, 235, height, dtype=np.float32)[:, None].repeat(width, 1)
    blue = np.full((height, width), (8 * index) % 200 + 16, dtype=np.float32)
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def write_video(
    path: Path,
    frames: int = 12,
    fps: Fraction = NTSC,
    size: tuple[int, int] = (48, 64),
    audio: str | None = None,
    index_first: bool = True,
) -> Path:
    """Encode ``frames`` ramp frames of ``size`` ``(H, W)`` into an mp4 at ``path``.

    ``audio``: ``"aac"``/``"pcm_s16le"``; ``index_first``: the moov index before the data
    (else after it, FFmpeg's default).
    """
    options = {"movflags": "faststart"} if index_first else {}
    with av.open(str(path), "w", options=options) as container:
        video = container.add_stream("libx264", rate=fps)
        video.height, video.width = size
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "1", "preset": "ultrafast", "bf": "0"}
        sound = None
        if audio is not None:
            sound = container.add_stream(audio, rate=AUDIO_RATE)
            sound.layout = "mono"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(ramp_frame(index, *size), format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if sound is not None:
            samples = round(frames / fps * AUDIO_RATE)
            tone = (0.2 * np.sin(np.arange(samples) * 0.05)).astype(np.float32)
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    tone[None, start : start + 1024], format="flt", layout="mono"
                )
                chunk.sample_rate, chunk.pts = AUDIO_RATE, start
                container.mux(sound.encode(chunk))
            container.mux(sound.encode(None))
    return path


def truncate(path: Path, target: Path, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``path``'s bytes to ``target``."""
    data = path.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """An 8-bit RGB PNG."""
    Image.fromarray(rgb).save(path)
    return path


def write_png16(path: Path, rgb: np.ndarray) -> Path:
    """A 16-bit RGB PNG (48 bits per pixel) of a ``uint16 (H, W, 3)`` array."""
    codec = av.CodecContext.create("png", "w")
    codec.height, codec.width = rgb.shape[:2]
    codec.pix_fmt = "rgb48be"
    packets = codec.encode(av.VideoFrame.from_ndarray(rgb, format="rgb48le")) + codec.encode(None)
    path.write_bytes(b"".join(bytes(packet) for packet in packets))
    return path


def write_exr(path: Path, rgb: np.ndarray) -> Path:
    """A float EXR with R, G, B channels of a ``float (H, W, 3)`` array."""
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    channels = {name: np.ascontiguousarray(rgb[..., c]) for c, name in enumerate("RGB")}
    OpenEXR.File(header, channels).write(str(path))
    return path


def audio_seconds(path: Path) -> float:
    """Duration of the first audio stream of ``path``, from its decoded samples."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.rate
