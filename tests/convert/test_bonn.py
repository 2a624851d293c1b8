"""Tests of the Bonn RGB-D Dynamic converter on tiny fake sequences in the TUM RGB-D layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.bonn import (
    BONN_INTRINSICS,
    TEST_SEQUENCES,
    BonnConverter,
    associate,
    read_tum_list,
)

HEIGHT, WIDTH = 6, 8
FLOAT16_RTOL = 5e-4
#: Per sequence: RGB times and depth times (s). In balloon2, RGB frame 2 has no depth within
#: 20 ms (its neighbours are 36 and 31 ms away) and the depth at 100.150 s matches nothing.
TIMES = {
    "rgbd_bonn_balloon2": ([100.0, 100.033, 100.067, 100.1], [100.004, 100.031, 100.098, 100.15]),
    "rgbd_bonn_crowd2": ([7.5, 7.533, 7.567], [7.501, 7.532, 7.566]),
}


def stored_depth(time: float) -> np.ndarray:
    """Known uint16 depth: 5000 steps per metre, 0 (no measurement) in the top-left corner."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    values = 5000 + 250 * cols + 100 * rows + int(round(time * 1000)) % 1000
    values[:2, :2] = 0
    return values.astype(np.uint16)


def expected_metres(time: float) -> np.ndarray:
    depth = stored_depth(time) / 5000.0
    depth[:2, :2] = np.nan
    return depth


def write_list(path: Path, kind: str, times: list[float]) -> None:
    """A TUM list: comment header, then ``timestamp kind/timestamp.png`` (shuffled order)."""
    lines = [f"# {kind} images", "# file: 'rgbd_bonn.bag'", "# timestamp filename"]
    lines += [f"{t:.6f} {kind}/{t:.6f}.png" for t in reversed(times)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def bonn_root(tmp_path: Path, write_rgb, write_png16, make_rgb) -> Path:
    root = tmp_path / "bonn"
    for s, (sequence, (rgb_times, depth_times)) in enumerate(TIMES.items()):
        folder = root / sequence
        for i, time in enumerate(rgb_times):
            write_rgb(folder / "rgb" / f"{time:.6f}.png", make_rgb(HEIGHT, WIDTH, 2 * s + i % 2))
        for time in depth_times:
            write_png16(folder / "depth" / f"{time:.6f}.png", stored_depth(time))
        write_list(folder / "rgb.txt", "rgb", rgb_times)
        write_list(folder / "depth.txt", "depth", depth_times)
    return root


def test_convert_associates_by_time_with_metres_and_invalid(
    bonn_root: Path, tmp_path: Path, read_clips, make_rgb, caplog
) -> None:
    with caplog.at_level(logging.WARNING):
        convert(BonnConverter(bonn_root), tmp_path / "out", "all", clip_length=0, progress=False)
    clips = read_clips(tmp_path / "out")

    assert [clip.key for clip in clips] == [
        "bonn_rgbd_bonn_balloon2_000000",
        "bonn_rgbd_bonn_crowd2_000000",
    ]
    balloon, crowd = clips
    assert balloon.meta["frame_ids"] == [0, 1, 3]  # RGB frame 2 has no depth within 20 ms
    assert crowd.meta["frame_ids"] == [0, 1, 2]
    assert "bonn/rgbd_bonn_balloon2: dropped 1 of 4 RGB frames" in caplog.text
    pairs = {0: 100.004, 1: 100.031, 3: 100.098}
    for t, frame in enumerate(balloon.meta["frame_ids"]):
        np.testing.assert_allclose(
            balloon.depth[t], expected_metres(pairs[frame]), rtol=FLOAT16_RTOL, equal_nan=True
        )
        assert np.abs(balloon.frames[t].astype(int) - make_rgb(HEIGHT, WIDTH, frame % 2)).mean() < 3
    assert balloon.depth[0, 5, 7] == pytest.approx((5000 + 1750 + 500 + 4) / 5000, rel=FLOAT16_RTOL)
    assert not np.isinf(crowd.depth).any()  # indoor: no sky
    assert balloon.meta["intrinsics"] == BONN_INTRINSICS
    assert balloon.meta["distortion"] == [0.039903, -0.099343, -0.00073, -0.000144, 0.0]


def test_first_frame_and_max_frames_cut_each_sequence(bonn_root: Path) -> None:
    converter = BonnConverter(bonn_root, max_frames="1", first_frame="1")
    clips = converter.list_clips("all", clip_length=0)

    assert [(clip.key, clip.frame_ids) for clip in clips] == [
        ("bonn_rgbd_bonn_balloon2_000001", [1]),
        ("bonn_rgbd_bonn_crowd2_000001", [1]),
    ]
    assert all(clip.extra["max_frames"] == 1 for clip in clips)
    assert [c.frame_ids for c in BonnConverter(bonn_root, first_frame=2).list_clips("all", 0)] == [
        [3],
        [2],
    ]
    with pytest.raises(ValueError, match="first_frame must be a whole number >= 0"):
        BonnConverter(bonn_root, first_frame="-1")


def test_associate_pairs_nearest_first_and_uses_each_depth_once() -> None:
    rgb = [1.0, 1.01, 1.05, 2.0]
    depth = [1.008, 1.049, 1.5]

    # 1.01 is nearer 1.008 than 1.0 is, so 1.0 is left without a partner; 2.0 has none in 20 ms
    assert associate(rgb, depth, max_difference_s=0.02) == {1: 0, 2: 1}
    assert associate(rgb, depth, max_difference_s=0.5) == {1: 0, 2: 1, 3: 2}


def test_test_split_is_the_five_benchmark_sequences(bonn_root: Path) -> None:
    with pytest.raises(FileNotFoundError, match="3 are not under .*rgbd_bonn_crowd3"):
        BonnConverter(bonn_root).sequences("test")

    for name in [*TEST_SEQUENCES, "rgbd_bonn_static"]:
        for sub in ("rgb", "depth"):
            (bonn_root / name / sub).mkdir(parents=True, exist_ok=True)
    converter = BonnConverter(bonn_root)

    assert converter.sequences("test") == list(TEST_SEQUENCES)
    assert converter.sequences("all") == sorted([*TEST_SEQUENCES, "rgbd_bonn_static"])


def test_bad_lists_and_missing_folders_are_named(bonn_root: Path, tmp_path: Path) -> None:
    rgb_list = bonn_root / "rgbd_bonn_crowd2/rgb.txt"
    rgb_list.write_text("# timestamp filename\n7.5\n")
    with pytest.raises(ValueError, match=r"rgb.txt:2: not a 'timestamp path' line"):
        read_tum_list(rgb_list)
    rgb_list.unlink()
    with pytest.raises(FileNotFoundError, match="rgbd_bonn_crowd2/rgb.txt does not exist"):
        BonnConverter(bonn_root).list_clips("all", clip_length=0)

    (bonn_root / "rgbd_bonn_balloon2/depth").rename(bonn_root / "rgbd_bonn_balloon2/moved")
    with pytest.raises(FileNotFoundError, match="'depth' of scene 'rgbd_bonn_balloon2'"):
        BonnConverter(bonn_root)
