"""Tests of the frame sources: exact fps and content, image sequences, bad input, bounded buffer."""

from __future__ import annotations

import functools
import http.server
import threading
import time
import weakref
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from flashdepth.inference.frames import VideoInfo
from flashdepth.inference.sources import BufferedSource, SourceError, open_source
from tests.inference.media import (
    NTSC,
    ramp_frame,
    truncate,
    write_exr,
    write_png,
    write_png16,
    write_video,
)

#: Largest difference of a decoded ramp frame from the encoded one (H.264 crf 1, yuv420p).
CODEC_TOLERANCE = 12


def test_video_gives_exact_fps_count_and_frames(tmp_path):
    source = open_source(str(write_video(tmp_path / "clip.mp4", frames=12)))
    info = source.info
    assert (info.name, info.width, info.height) == ("clip", 64, 48)
    assert info.fps == Fraction(30000, 1001) and isinstance(info.fps, Fraction)
    assert (info.num_frames, info.has_audio, info.live) == (12, False, False)
    frames = list(source)
    assert [frame.index for frame in frames] == list(range(12))
    for frame in frames:
        assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (48, 64, 3)
        error = np.abs(frame.rgb.astype(int) - ramp_frame(frame.index).astype(int)).max()
        assert error <= CODEC_TOLERANCE
        assert frame.time == pytest.approx(frame.index / NTSC, abs=1e-6)
    assert (source.frames_delivered, source.ended_early, source.error) == (12, False, None)


def test_video_with_audio_says_so(tmp_path):
    info = open_source(str(write_video(tmp_path / "talk.mp4", frames=3, audio="aac"))).info
    assert info.has_audio and info.num_frames == 3


def test_truncated_mp4_yields_the_good_frames_and_reports_ending_early(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", frames=24)
    source = open_source(str(truncate(whole, tmp_path / "cut.mp4", 0.5)))
    frames = list(source)  # a clean early end: no exception
    assert 0 < len(frames) < 24 == source.info.num_frames
    assert source.frames_delivered == len(frames) and source.ended_early
    assert source.error is None
    for frame in frames:
        error = np.abs(frame.rgb.astype(int) - ramp_frame(frame.index).astype(int)).max()
        assert error <= CODEC_TOLERANCE


def test_truncated_mp4_without_its_index_is_refused_at_open(tmp_path):
    whole = write_video(tmp_path / "whole.mp4", frames=6, index_first=False)
    cut = truncate(whole, tmp_path / "cut.mp4", 0.5)
    with pytest.raises(SourceError, match=r"cut\.mp4 is not a readable video .*moov atom"):
        open_source(str(cut))


def test_missing_path_and_not_a_video_are_clear_errors(tmp_path):
    with pytest.raises(SourceError, match=r"input .*nothing\.mp4 does not exist; give a video"):
        open_source(str(tmp_path / "nothing.mp4"))
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(SourceError, match=r"notes\.txt is not a readable video"):
        open_source(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "empty"))


def test_missing_camera_and_unreachable_stream_are_clear_errors():
    with pytest.raises(SourceError, match=r"cannot open /dev/video97 .* camera is connected"):
        open_source("97")
    with pytest.raises(SourceError, match=r"cannot open rtsp://127\.0\.0\.1:9/live .*running"):
        open_source("rtsp://127.0.0.1:9/live")


def test_http_url_streams_a_served_video(tmp_path):
    write_video(tmp_path / "served.mp4", frames=5)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = open_source(f"http://127.0.0.1:{server.server_port}/served.mp4")
        assert source.info.name == "served" and source.info.fps == NTSC
        assert not source.info.live  # the container announces its 5 frames
        assert len(list(source)) == 5
    finally:
        server.shutdown()


def write_sequence(folder: Path, numbers: list[int], name: str = "frame_{}.png") -> list[Path]:
    folder.mkdir(exist_ok=True)
    return [write_png(folder / name.format(n), ramp_frame(n, 8, 10)) for n in numbers]


def test_image_sequences_are_sorted_by_frame_number(tmp_path):
    write_sequence(tmp_path / "shot", [10, 2, 1, 9, 3, 4, 5, 6, 7, 8])  # frame_2 before frame_10
    for spec, name in (
        (tmp_path / "shot", "shot"),
        (tmp_path / "shot" / "frame_%d.png", "frame"),
        (tmp_path / "shot" / "frame_*.png", "frame"),
    ):
        source = open_source(str(spec), fps=Fraction(24))
        assert (source.info.name, source.info.num_frames, source.info.fps) == (name, 10, 24)
        frames = list(source)
        assert [frame.index for frame in frames] == list(range(1, 11))
        for frame in frames:
            np.testing.assert_array_equal(frame.rgb, ramp_frame(frame.index, 8, 10))
            assert frame.time == pytest.approx(frame.index / 24)


def test_gap_in_numbering_names_the_missing_frame(tmp_path):
    write_sequence(tmp_path / "gap", [1, 2, 4, 5])
    with pytest.raises(SourceError, match=r"no frame number \[3\] between 1 and 5"):
        open_source(str(tmp_path / "gap"))


def test_mixed_sizes_name_the_odd_file(tmp_path):
    write_sequence(tmp_path / "mixed", [1, 2, 3])
    write_png(tmp_path / "mixed" / "frame_2.png", np.zeros((9, 10, 3), np.uint8))
    with pytest.raises(SourceError, match=r"frame_2\.png not 10x8 like frame_1\.png"):
        open_source(str(tmp_path / "mixed"))


def test_two_files_with_one_number_and_mixed_types_are_refused(tmp_path):
    write_sequence(tmp_path / "twice", [1, 2])
    write_png(tmp_path / "twice" / "frame_01.png", ramp_frame(1, 8, 10))
    with pytest.raises(SourceError, match="both have frame number 1"):
        open_source(str(tmp_path / "twice"))
    write_sequence(tmp_path / "types", [1])
    write_exr(tmp_path / "types" / "frame_2.exr", np.zeros((8, 10, 3), np.float32))
    with pytest.raises(SourceError, match=r"several types \['.exr', '.png'\]"):
        open_source(str(tmp_path / "types"))


def test_16_bit_png_and_exr_read_back_exactly(tmp_path):
    generator = np.random.default_rng(0)
    deep = generator.integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    (tmp_path / "png16").mkdir()
    write_png16(tmp_path / "png16" / "f.0001.png", deep)
    frames = list(open_source(str(tmp_path / "png16")))
    assert frames[0].rgb.dtype == np.uint16 and frames[0].index == 1
    np.testing.assert_array_equal(frames[0].rgb, deep)
    linear = generator.normal(0.5, 2.0, (6, 7, 3)).astype(np.float32)  # HDR, negatives too
    (tmp_path / "exr").mkdir()
    write_exr(tmp_path / "exr" / "plate.1001.exr", linear)
    write_exr(tmp_path / "exr" / "plate.1002.exr", linear * 2)
    frames = list(open_source(str(tmp_path / "exr" / "plate.%04d.exr")))
    assert [frame.index for frame in frames] == [1001, 1002]
    assert frames[0].rgb.dtype == np.float32
    np.testing.assert_array_equal(frames[0].rgb, linear)
    np.testing.assert_array_equal(frames[1].rgb, linear * 2)


def test_damaged_image_raises_after_the_good_frames(tmp_path):
    files = write_sequence(tmp_path / "bad", [1, 2, 3, 4])
    truncate(files[2], files[2], 0.6)  # the header still reads, the pixels do not
    source = open_source(str(tmp_path / "bad"))
    seen = []
    with pytest.raises(SourceError, match=r"cannot read image .*frame_3\.png"):
        for frame in source:
            seen.append(frame.index)
    assert seen == [1, 2] and source.frames_delivered == 2
    assert isinstance(source.error, SourceError)


def test_decoder_thread_error_is_raised_in_the_consumer_naming_the_input():
    def frames():
        for index in range(5):
            if index == 3:
                raise RuntimeError("bitstream damaged")
            yield np.zeros((2, 2, 3), np.uint8)

    source = BufferedSource(VideoInfo("cam", "rtsp://cam/1", 2, 2), frames())
    seen = []
    with pytest.raises(SourceError, match=r"decoding rtsp://cam/1 failed after 3 .*damaged"):
        for frame in source:
            seen.append(frame.index)
    assert seen == [0, 1, 2]


def test_decoder_holds_at_most_queue_size_frames(tmp_path):
    alive = {"now": 0, "most": 0}

    def released() -> None:
        alive["now"] -= 1

    def frames():
        for _ in range(40):
            rgb = np.zeros((16, 16, 3), np.uint8)
            alive["now"] += 1
            alive["most"] = max(alive["most"], alive["now"])
            weakref.finalize(rgb, released)
            yield rgb

    source = BufferedSource(VideoInfo("slow", "memory", 16, 16), frames(), queue_size=3)
    for frame in source:
        time.sleep(0.002)  # a slow consumer: the decoder runs ahead until the buffer is full
        del frame
    assert source.frames_delivered == 40
    assert source.max_buffered == 3
    # Frames alive at once: the 3 buffered + the one the consumer holds, whatever the length.
    assert alive["most"] <= 3 + 1
    video = open_source(str(write_video(tmp_path / "v.mp4", frames=10)), queue_size=2)
    for _ in video:
        time.sleep(0.01)
    assert video.max_buffered == 2


def test_close_stops_the_decoder_early(tmp_path):
    source = open_source(str(write_video(tmp_path / "v.mp4", frames=30)), queue_size=2)
    for frame in source:
        if frame.index == 1:
            break
    source.close()
    assert not source._thread.is_alive()
    assert source.frames_delivered == 2 and not source.ended_early
    with pytest.raises(RuntimeError, match="already being read"):
        next(iter(source))
