"""Tests of the UrbanSyn converter: PNG RGB, EXR depth in units of 1e5 m, sky from the labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.convert import convert
from datamodules.convert.urbansyn import UrbanSynConverter

HEIGHT, WIDTH = 12, 16
NUMBERS = (1, 2, 3, 10)  # rgb_0001 ... rgb_0010
FLOAT16_RTOL = 5e-4


def photo(number: int) -> np.ndarray:
    """A smooth (H, W, 3) uint8 image, distinct per number, that survives JPEG closely."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.array([60 + 10 * number, 150 - 5 * number, 120])
    return (base + 3 * rows[..., None] + cols[..., None]).clip(0, 255).astype(np.uint8)


def metres(number: int) -> np.ndarray:
    """Known depth in metres of the non-sky, valid pixels."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    return (3.0 + 0.5 * cols + 1.5 * rows + number).astype(np.float64)


def classes() -> np.ndarray:
    """Labels: sky (10) over the top two rows, road (0) and buildings (2) below."""
    labels = np.full((HEIGHT, WIDTH), 2, dtype=np.uint8)
    labels[:2] = 10
    labels[-3:] = 0
    return labels


def stored_depth(number: int) -> np.ndarray:
    """The EXR content: metres / 1e5, with a far-plane pixel and invalid pixels."""
    raw = (metres(number) / 1e5).astype(np.float32)
    raw[:2] = 1.0  # the sky is rendered at the far plane (100 km)
    raw[5, 5] = 0.2  # 20 km without the sky label: still beyond 10 km
    raw[6, 0] = 0.0
    raw[6, 1] = np.nan
    return raw


def expected_metres(number: int) -> np.ndarray:
    depth = metres(number)
    depth[:2] = np.inf
    depth[5, 5] = np.inf
    depth[6, :2] = np.nan
    return depth


@pytest.fixture
def urbansyn_root(tmp_path: Path, write_rgb, write_exr) -> Path:
    root = tmp_path / "UrbanSyn"
    for number in NUMBERS:
        write_rgb(root / "rgb" / f"rgb_{number:04d}.png", photo(number))
        write_exr(root / "depth" / f"depth_{number:04d}.exr", stored_depth(number), channel="Y")
        labels = root / "ss" / f"ss_{number:04d}.png"
        labels.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(classes(), mode="L").save(labels)
    return root


def test_convert_gives_metric_depth_with_sky(
    urbansyn_root: Path, tmp_path: Path, read_clips
) -> None:
    report = convert(
        UrbanSynConverter(urbansyn_root), tmp_path / "out", "test", clip_length=2, progress=False
    )
    clips = read_clips(tmp_path / "out")

    assert report.clips_written == 2
    assert [clip.key for clip in clips] == ["urbansyn_all_000001", "urbansyn_all_000003"]
    assert [clip.meta["frame_ids"] for clip in clips] == [[1, 2], [3, 10]]
    for clip in clips:
        assert clip.meta["intrinsics"] is None
        for t, number in enumerate(clip.meta["frame_ids"]):
            np.testing.assert_allclose(
                clip.depth[t], expected_metres(number), rtol=FLOAT16_RTOL, equal_nan=True
            )
            error = np.abs(clip.frames[t].astype(int) - photo(number)).mean()
            assert error < 3.0


def test_stride_skips_images(urbansyn_root: Path) -> None:
    clips = UrbanSynConverter(urbansyn_root).list_clips("test", clip_length=2, stride=2)

    assert [clip.frame_ids for clip in clips] == [[1, 3]]


def test_colour_labels_are_refused(urbansyn_root: Path, make_rgb) -> None:
    Image.fromarray(make_rgb(HEIGHT, WIDTH, 0)).save(urbansyn_root / "ss/ss_0002.png")
    converter = UrbanSynConverter(urbansyn_root)
    spec = converter.list_clips("test", clip_length=2)[0]

    with pytest.raises(ValueError, match=r"ss_0002\.png has shape \(12, 16, 3\)"):
        converter.load_clip(spec)


def test_labels_of_another_size_are_refused(urbansyn_root: Path) -> None:
    labels = np.zeros((HEIGHT + 1, WIDTH), dtype=np.uint8)
    Image.fromarray(labels, mode="L").save(urbansyn_root / "ss/ss_0001.png")
    converter = UrbanSynConverter(urbansyn_root)
    spec = converter.list_clips("test", clip_length=1)[0]

    with pytest.raises(ValueError, match=r"ss_0001\.png is \(13, 16\) but .*depth_0001\.exr"):
        converter.load_frame(spec, 0)


def test_missing_label_folder_names_it(urbansyn_root: Path) -> None:
    (urbansyn_root / "ss").rename(urbansyn_root / "ss_moved")

    with pytest.raises(FileNotFoundError, match="'ss' not found") as error:
        UrbanSynConverter(urbansyn_root)
    assert "ROOT/depth/depth_0001.exr" in str(error.value)
