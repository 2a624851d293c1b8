"""Tests of the depth sinks, the streaming colour map and units.json."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import OpenEXR
import pytest
from PIL import Image

from flashdepth.inference.colormap import DepthColorizer, RunningRange, colorize
from flashdepth.inference.frames import Frame, VideoInfo
from flashdepth.inference.sinks import (
    PNG16_STEP,
    atomic_write,
    completed,
    make_sinks,
    write_units,
)
from flashdepth.inference.sources import open_source
from tests.inference.media import NTSC, audio_seconds, write_video

DESCRIPTION = {"model": "FlashDepth", "network_size": [28, 42], "dtype": "fp32"}


def depth_map(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth ×100 inverse depth map that changes with ``index``."""
    rows = np.linspace(1.0, 300.0, height, dtype=np.float32)[:, None]
    return (rows + np.float32(index) + np.zeros((1, width), np.float32)).astype(np.float32)


def write_all(sinks, info, out_dir, frames: int) -> None:
    """Open ``sinks`` and write ``frames`` black frames with :func:`depth_map` depth."""
    for sink in sinks:
        sink.open(info, out_dir)
    for index in range(frames):
        rgb = np.zeros((info.height, info.width, 3), np.uint8)
        for sink in sinks:
            sink.write(Frame(index, rgb, index / float(info.fps or 24)), depth_map(index))


def test_exr_has_one_float32_channel_z_with_the_values(tmp_path):
    (sink,) = make_sinks(["exr"])
    sink.open(VideoInfo("clip", "clip.mp4", 64, 48), tmp_path)
    depth = np.random.default_rng(0).uniform(0, 700, (48, 64)).astype(np.float32)
    sink.write(Frame(7, np.zeros((48, 64, 3), np.uint8)), depth)
    sink.close()
    with OpenEXR.File(str(tmp_path / "clip" / "exr" / "000007.exr"), separate_channels=True) as exr:
        channels = exr.channels()
        assert list(channels) == ["Z"]
        assert channels["Z"].pixels.dtype == np.float32
        np.testing.assert_array_equal(channels["Z"].pixels, depth)


def test_png16_npy_npz_round_trip(tmp_path):
    sinks = make_sinks(["png16", "npy", "npz"])
    depth = np.random.default_rng(1).uniform(0, 650, (48, 64)).astype(np.float32)
    depth[0, :3] = [-5.0, 700.0, np.nan]  # clipped to [0, 655.35]; NaN -> 0
    for sink in sinks:
        sink.open(VideoInfo("clip", "clip.mp4", 64, 48), tmp_path)
        sink.write(Frame(3, np.zeros((48, 64, 3), np.uint8)), depth)
        sink.close()
    png = np.asarray(Image.open(tmp_path / "clip" / "png16" / "000003.png"))
    assert png.dtype == np.uint16
    decoded = png / round(1 / PNG16_STEP)
    np.testing.assert_allclose(decoded[1:], depth[1:], atol=PNG16_STEP / 2 + 1e-4)
    np.testing.assert_allclose(decoded[0, :3], [0.0, 655.35, 0.0], atol=1e-9)
    npy = np.load(tmp_path / "clip" / "npy" / "000003.npy")
    npz = np.load(tmp_path / "clip" / "npz" / "000003.npz")["inverse_depth"]
    for array in (npy, npz):
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, depth)
    assert not list((tmp_path / "clip").rglob(".*"))  # no temporary file left


def test_atomic_write_leaves_nothing_under_the_final_name_on_failure(tmp_path):
    def half_then_fail(temporary):
        temporary.write_bytes(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "000001.exr", half_then_fail)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("audio", "container"), [("aac", "mp4"), ("pcm_s16le", "mov")])
def test_mp4_keeps_exact_fps_resolution_and_audio(tmp_path, audio, container):
    video = write_video(tmp_path / f"talk.{container}", frames=15, audio=audio)
    info = open_source(str(video)).info
    sinks = make_sinks(["mp4", "sbs"], preset="ultrafast")
    write_all(sinks, info, tmp_path / "out", 15)
    for sink in sinks:
        sink.close()
    folder = tmp_path / "out" / "talk"
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["talk_depth.mp4", "talk_rgb_depth.mp4"]
    for name, width in (("talk_depth.mp4", 64), ("talk_rgb_depth.mp4", 128)):
        with av.open(str(folder / name)) as output:
            stream = output.streams.video[0]
            assert stream.average_rate == Fraction(30000, 1001)
            assert (stream.codec_context.width, stream.codec_context.height) == (width, 48)
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            assert len(list(output.decode(stream))) == 15
            codec = output.streams.audio[0].codec_context.name
        assert codec == "aac"
        assert audio_seconds(folder / name) == pytest.approx(audio_seconds(video), abs=0.1)


def test_abort_leaves_a_playable_partial_and_no_final_name(tmp_path):
    info = VideoInfo("cut", "cut.mp4", 64, 48, fps=NTSC, num_frames=30)
    sinks = make_sinks(["mp4", "sbs"], preset="ultrafast")
    write_all(sinks, info, tmp_path, 6)
    for sink in sinks:
        sink.abort()
    folder = tmp_path / "cut"
    assert sorted(path.name for path in folder.iterdir()) == [
        "cut_depth.partial.mp4",
        "cut_rgb_depth.partial.mp4",
    ]
    with av.open(str(folder / "cut_depth.partial.mp4")) as partial:
        stream = partial.streams.video[0]
        assert stream.average_rate == NTSC
        assert len(list(partial.decode(stream))) == 6
    empty = make_sinks(["mp4"])[0]
    empty.open(VideoInfo("none", "none.mp4", 64, 48, fps=NTSC), tmp_path)
    empty.abort()
    assert list((tmp_path / "none").iterdir()) == []  # no frame: no partial file either


def test_odd_sizes_are_padded_by_one_pixel(tmp_path):
    (sink,) = make_sinks(["mp4"], preset="ultrafast")
    sink.open(VideoInfo("odd", "odd.mp4", 63, 47, fps=Fraction(25)), tmp_path)
    for index in range(3):
        depth = depth_map(index, 47, 63)
        sink.write(Frame(index, np.zeros((47, 63, 3), np.uint8), index / 25), depth)
    sink.close()
    with av.open(str(tmp_path / "odd" / "odd_depth.mp4")) as output:
        stream = output.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        assert stream.average_rate == 25


def test_side_by_side_shows_float_frames_through_srgb_at_the_depth_size(tmp_path):
    (sink,) = make_sinks(["sbs"], preset="ultrafast", crf=0)
    sink.open(VideoInfo("plate", "plate.%04d.exr", 60, 40, fps=Fraction(24)), tmp_path)
    linear = np.full((40, 60, 3), 0.18, np.float32)  # 18 % grey in linear light
    for index in range(2):  # depth at the network's size (output="network")
        sink.write(Frame(index, linear), np.full((28, 42), 5.0, np.float32))
    sink.close()
    with av.open(str(tmp_path / "plate" / "plate_rgb_depth.mp4")) as output:
        stream = output.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (84, 28)
        picture = next(output.decode(stream)).to_ndarray(format="rgb24").astype(float)
    assert picture[:, :42].mean() == pytest.approx(0.4613 * 255, abs=3)  # sRGB of 0.18


def test_units_json_states_the_numbers_and_marks_completion(tmp_path):
    info = VideoInfo("clip", "clip.mp4", 64, 48, fps=NTSC, num_frames=12, has_audio=True)
    assert not completed(tmp_path, "clip")
    write_units(tmp_path / "clip", info, DESCRIPTION, ["exr", "png16", "mp4"], frames=12)
    units = json.loads((tmp_path / "clip" / "units.json").read_text())
    assert units["video"]["fps"] == "30000/1001"
    assert units["video"]["resolution"] == [64, 48] and units["video"]["frames"] == 12
    assert units["scale"].startswith("x100")
    assert units["formats"]["exr"] == {
        "files": "exr/{index:06d}.exr",
        "channel": "Z",
        "dtype": "float32",
        "decode": "value = Z",
    }
    assert units["formats"]["png16"]["scale"] == 100
    assert units["formats"]["png16"]["decode"] == "value = png / 100"
    assert units["formats"]["mp4"]["file"] == "clip_depth.mp4"
    assert units["model"] == DESCRIPTION
    assert completed(tmp_path, "clip") and completed(tmp_path, "clip", ["exr", "mp4"])
    assert not completed(tmp_path, "clip", ["npz"])  # asked for a format not written
    dav2 = {"model": "DepthAnythingV2"}
    write_units(tmp_path / "still", info, dav2, ["npy"], depth_size=(28, 42))
    units = json.loads((tmp_path / "still" / "units.json").read_text())
    assert units["scale"].startswith("affine-invariant")
    assert units["video"]["resolution"] == [42, 28]


def test_make_sinks_refuses_bad_requests():
    with pytest.raises(ValueError, match="unknown output format.*'tiff'.*exr, png16"):
        make_sinks(["exr", "tiff"])
    with pytest.raises(ValueError, match=r"\['exr'\] given twice"):
        make_sinks(["exr", "exr"])
    with pytest.raises(TypeError, match=r"unknown sink option\(s\) \['quality'\]"):
        make_sinks(["mp4"], quality=3)
    assert [sink.file_format for sink in make_sinks(["sbs", "npz"])] == ["sbs", "npz"]


def test_turbo_draws_near_red_and_far_blue():
    colours = colorize(np.array([[10.0, 90.0, 200.0]]), low=0.0, high=100.0).astype(int)
    far, near, nearer = colours[0]
    assert far[2] > 1.5 * max(far[0], far[1])  # blue
    assert near[0] > 2 * max(near[1], near[2])  # red
    np.testing.assert_array_equal(nearer, colorize(np.array([[100.0]]), 0.0, 100.0)[0, 0])


def test_running_range_is_stable_on_a_still_scene():
    generator = np.random.default_rng(0)
    scene = depth_map(0)
    colorizer = DepthColorizer(time_constant_s=1.0)
    ranges, pictures = [], []
    for _ in range(60):  # 2 s at 30 fps, sensor noise of 0.5 % on every frame
        noisy = scene * (1 + 0.005 * generator.standard_normal(scene.shape)).astype(np.float32)
        pictures.append(colorizer(noisy, 1 / 30))
        ranges.append(colorizer.range.range)
    lows, highs = np.array(ranges).T
    span = highs[0] - lows[0]
    # The normalisation moves by less than 0.1 % of the range from one frame to the next ...
    assert np.abs(np.diff(lows)).max() < 1e-3 * span
    assert np.abs(np.diff(highs)).max() < 1e-3 * span
    # ... so the same depth keeps exactly its colour from one frame to the next.
    still = [colorizer(scene, 1 / 30) for _ in range(3)]
    np.testing.assert_array_equal(still[1], still[2])


@pytest.mark.parametrize("fps", [30, 60])
def test_running_range_adapts_within_seconds_whatever_the_fps(fps):
    near = depth_map(0)
    far = near * 0.25  # the camera turns to a scene four times as far away
    running = RunningRange(time_constant_s=1.0)
    start_low, start_high = running.update(near, 1 / fps)
    target_low, target_high = RunningRange().update(far, 1 / fps)  # the far scene's own range
    low, high = running.update(far, 1 / fps)
    assert (start_high - high) / (start_high - target_high) < 0.05  # one frame: barely moves
    for _ in range(3 * fps - 1):  # three seconds of the new scene
        low, high = running.update(far, 1 / fps)
    assert (start_high - high) / (start_high - target_high) == pytest.approx(0.95, abs=0.01)
    assert (start_low - low) / (start_low - target_low) == pytest.approx(0.95, abs=0.01)
