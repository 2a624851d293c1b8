"""Depth as viewable H.264 video: a colour-mapped depth mp4 and an RGB | depth side by side.

Both sinks encode with libx264 (yuv420p, via PyAV) at the **exact input frame rate** (the
stream rate is the source's ``Fraction``: 30000/1001 stays 30000/1001; image sequences
without a rate get :data:`DEFAULT_FPS`) and at the depth's resolution (the input's unless
the predictor returns the network's). yuv420p needs even sides: an odd height or width is
padded by one pixel (the last row/column repeated). The input's audio track is copied into
the output as it streams: remuxed packet for packet when mp4 can hold its codec, otherwise
re-encoded to AAC.

Files: ``{out}/{name}/{name}_depth.mp4`` and ``{out}/{name}/{name}_rgb_depth.mp4``, written
as ``{name}_depth.partial.mp4`` (resp. ``_rgb_depth.partial.mp4``) and renamed by
``close()``. ``abort()`` finalises the container, so the partial file plays (frames so far),
but never takes the final name; a partial file with no frame is removed.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from flashdepth.inference.colormap import DepthColorizer
from flashdepth.inference.frames import Frame, VideoInfo
from flashdepth.inference.predictor import rgb_to_unit

#: Stream rate of videos made from image sequences that state no rate.
DEFAULT_FPS = Fraction(24)
#: Audio codecs an mp4 holds as they are (copied without re-encoding).
MP4_AUDIO_CODECS = ("aac", "mp3", "ac3", "eac3", "alac", "flac", "opus")


def pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """Repeat the last row and/or column of ``(H, W, 3)`` so both sides are even."""
    height, width = rgb.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return rgb
    return np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


class AudioCopy:
    """The input's first audio track, muxed into an output as its video advances.

    Args:
        source: Path of the input video.
        output: The output container (the audio stream is added to it here).
    """

    def __init__(self, source: str, output: av.container.OutputContainer) -> None:
        self.input = av.open(source)
        template = self.input.streams.audio[0]
        video = self.input.streams.video[0]
        start = video.start_time if video.start_time is not None else 0
        self.offset_s = float(start * video.time_base) if video.time_base else 0.0
        self.remux = template.codec_context.name in MP4_AUDIO_CODECS
        if self.remux:
            self.stream = output.add_stream_from_template(template)
        else:
            self.stream = output.add_stream("aac", rate=template.rate)
            self.stream.layout = template.layout
        self.output = output
        self.packets = self.input.demux(template)
        self.waiting: av.Packet | None = None

    def mux_until(self, seconds: float | None) -> None:
        """Mux the audio that starts before ``seconds`` of output time (``None``: all)."""
        while True:
            packet = self.waiting or next(self.packets, None)
            self.waiting = None
            if packet is None:
                return
            if packet.pts is not None and seconds is not None:
                if float(packet.pts * packet.time_base) - self.offset_s >= seconds:
                    self.waiting = packet
                    return
            self._mux(packet)

    def _mux(self, packet: av.Packet) -> None:
        """Copy one packet (shifted so the video's first frame is time 0) or re-encode it."""
        if not self.remux:
            for frame in packet.decode():
                frame.pts = None  # the encoder counts samples from 0
                self.output.mux(self.stream.encode(frame))
            return
        if packet.dts is None:  # the demuxer's end-of-stream marker
            return
        shift = round(self.offset_s / packet.time_base)
        packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
        packet.stream = self.stream
        self.output.mux(packet)

    def close(self) -> None:
        """Flush a re-encoding encoder and close the input."""
        if not self.remux:
            self.output.mux(self.stream.encode(None))
        self.input.close()


class DepthVideoSink:
    """Colour-mapped depth (turbo, near = red, running percentiles) as an H.264 mp4.

    Args:
        crf: x264 constant rate factor (0 lossless … 51; 18 looks lossless).
        preset: x264 speed preset (``ultrafast`` … ``veryslow``).
        time_constant_s: Seconds of video the colour normalisation averages over.
    """

    file_format = "mp4"
    suffix = "_depth"

    def __init__(
        self, crf: int = 18, preset: str = "veryfast", time_constant_s: float = 1.0
    ) -> None:
        self.crf = crf
        self.preset = preset
        self.time_constant_s = time_constant_s

    def open(self, info: VideoInfo, out_dir: Path) -> None:
        """Create ``{out}/{name}/`` and the partial mp4."""
        folder = Path(out_dir) / info.name
        folder.mkdir(parents=True, exist_ok=True)
        self.final = folder / f"{info.name}{self.suffix}.mp4"
        self.partial = folder / f"{info.name}{self.suffix}.partial.mp4"
        self.info = info
        self.fps = info.fps or DEFAULT_FPS
        self.container = av.open(str(self.partial), "w")
        self.stream: av.VideoStream | None = None
        self.audio: AudioCopy | None = None
        self.colorizer = DepthColorizer(self.time_constant_s)
        self.frames = 0
        self.last_pts = -1
        self.first_time: float | None = None

    def compose(self, frame: Frame, depth: np.ndarray, seconds: float) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 picture of one frame."""
        return self.colorizer(depth, seconds)

    def _start(self, height: int, width: int) -> None:
        """Add the video (and audio) streams once the picture size is known."""
        if "libx264" not in av.codecs_available:
            raise RuntimeError(
                f"cannot write {self.final}: this FFmpeg (PyAV) has no libx264 encoder; "
                "install PyAV from PyPI (pip install av), whose wheels include it"
            )
        self.stream = self.container.add_stream("libx264", rate=self.fps)
        self.stream.height, self.stream.width = height + height % 2, width + width % 2
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(self.crf), "preset": self.preset}
        if self.info.has_audio and not self.info.live:
            self.audio = AudioCopy(self.info.source, self.container)

    def _pts(self, frame: Frame) -> int:
        """Frame position at the stream rate; always increasing.

        The position comes from the frame's time when known (keeps the gaps of dropped
        frames), else it is the next position.
        """
        if frame.time is None:
            return self.last_pts + 1
        if self.first_time is None:
            self.first_time = frame.time
        return max(self.last_pts + 1, round((frame.time - self.first_time) * self.fps))

    def write(self, frame: Frame, depth: np.ndarray) -> None:
        """Encode one frame's picture; mux the audio up to its end."""
        pts = self._pts(frame)
        steps = pts - self.last_pts if self.last_pts >= 0 else 1  # > 1 after dropped frames
        picture = self.compose(frame, depth, float(steps / self.fps))
        if self.stream is None:
            self._start(*picture.shape[:2])
        video_frame = av.VideoFrame.from_ndarray(pad_to_even(picture), format="rgb24")
        video_frame.pts = pts
        self.container.mux(self.stream.encode(video_frame))
        self.last_pts = pts
        self.frames += 1
        if self.audio is not None:
            self.audio.mux_until(float((pts + 1) / self.fps))

    def _finalise(self, all_audio: bool) -> None:
        """Flush the encoder, end the audio, write the container's index."""
        if self.stream is not None:
            self.container.mux(self.stream.encode(None))
        if self.audio is not None:
            if all_audio:
                self.audio.mux_until(None)
            self.audio.close()
        self.container.close()

    def close(self) -> None:
        """Finish the video and give it its final name."""
        self._finalise(all_audio=True)
        os.replace(self.partial, self.final)

    def abort(self) -> None:
        """Finalise the partial mp4 (playable, frames so far); never the final name."""
        try:
            self._finalise(all_audio=False)
        finally:
            if self.frames == 0:
                self.partial.unlink(missing_ok=True)


class SideBySideSink(DepthVideoSink):
    """The input frame and its colour-mapped depth side by side (RGB | depth) as an mp4.

    Float (EXR) frames are shown through the sRGB curve, 16-bit frames scaled to 8 bits.
    """

    file_format = "sbs"
    suffix = "_rgb_depth"

    def compose(self, frame: Frame, depth: np.ndarray, seconds: float) -> np.ndarray:
        """``(H, 2W, 3)``: the frame (resized to the depth's size if they differ) | depth."""
        rgb = frame.rgb
        if rgb.dtype != np.uint8:
            rgb = np.round(rgb_to_unit(rgb) * 255).astype(np.uint8)
        if rgb.shape[:2] != depth.shape:
            size = (depth.shape[1], depth.shape[0])
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        return np.concatenate([rgb, self.colorizer(depth, seconds)], axis=1)
