"""Tests of the ETH3D converter on a tiny fake dataset: raw float32 depth files named `.JPG`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.convert import convert
from datamodules.convert.eth3d import Eth3dConverter, read_colmap_image_cameras

HEIGHT, WIDTH = 12, 16
PHOTOS = {"courtyard": (38, 9, 12), "office": (5, 6)}  # DSC numbers, deliberately unsorted
FLOAT16_RTOL = 5e-4
FISHEYE = "3411.5 3410.2 7.6 5.4 0.21 0.22 -5e-06 0.0005 -0.158 0.4 0.0003 0.0002"


def photo(number: int) -> np.ndarray:
    """A smooth (H, W, 3) uint8 photo, distinct per number, that survives two JPEG passes."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.array([40 + 4 * number, 200 - 3 * number, 90 + 2 * number])
    return (base + 2 * rows[..., None] + cols[..., None]).clip(0, 255).astype(np.uint8)


def raw_depth(number: int) -> np.ndarray:
    """Known depth in metres with no-measurement pixels (+inf, 0, NaN)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    depth = (2.0 + 0.125 * cols + 0.25 * rows + number).astype(np.float32)
    depth[0, :5] = np.inf  # ETH3D: no laser point (sky, glass, outside the scan)
    depth[1, 0] = 0.0
    depth[1, 1] = np.nan
    return depth


def expected_metres(number: int) -> np.ndarray:
    depth = raw_depth(number)
    depth[0, :5] = np.nan
    depth[1, :2] = np.nan
    return depth


def write_calibration(folder: Path, photos: tuple[int, ...], camera_of: dict[int, int]) -> None:
    """COLMAP text calibration: cameras.txt and images.txt with a points line per photo."""
    folder.mkdir(parents=True)
    (folder / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n"
        "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        f"0 THIN_PRISM_FISHEYE {WIDTH} {HEIGHT} {FISHEYE}\n"
        f"1 PINHOLE {WIDTH} {HEIGHT} 3000 3001 8 6\n"
    )
    lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, ..., NAME"]
    for image_id, number in enumerate(photos):
        lines.append(
            f"{image_id} 1 0 0 0 0.1 0.2 0.3 {camera_of[number]} dslr_images/DSC_{number:04d}.JPG"
        )
        lines.append("" if image_id == 0 else "10.5 20.5 -1 30.5 40.5 7")  # points may be empty
    (folder / "images.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def eth3d_root(tmp_path: Path, write_rgb) -> Path:
    root = tmp_path / "eth3d"
    for scene, photos in PHOTOS.items():
        for number in photos:
            name = f"DSC_{number:04d}.JPG"
            write_rgb(root / scene / "images/dslr_images" / name, photo(number))
            depth_file = root / scene / "ground_truth_depth/dslr_images" / name
            depth_file.parent.mkdir(parents=True, exist_ok=True)
            raw_depth(number).astype("<f4").tofile(depth_file)
    write_calibration(
        root / "courtyard/dslr_calibration_jpg", PHOTOS["courtyard"], {9: 0, 12: 0, 38: 1}
    )
    return root


def test_convert_gives_metric_depth_invalid_and_camera(
    eth3d_root: Path, tmp_path: Path, read_clips
) -> None:
    report = convert(
        Eth3dConverter(eth3d_root), tmp_path / "out", "test", clip_length=2, progress=False
    )
    clips = read_clips(tmp_path / "out")

    assert report.clips_written == 2
    assert [clip.key for clip in clips] == ["eth3d_courtyard_000009", "eth3d_office_000005"]
    courtyard, office = clips
    assert courtyard.meta["frame_ids"] == [9, 12]  # DSC number order; 38 left over
    assert office.meta["frame_ids"] == [5, 6]
    for clip in clips:
        for t, number in enumerate(clip.meta["frame_ids"]):
            np.testing.assert_allclose(
                clip.depth[t], expected_metres(number), rtol=FLOAT16_RTOL, equal_nan=True
            )
            assert not np.isinf(clip.depth[t]).any()  # ETH3D has no sky label
            error = np.abs(clip.frames[t].astype(int) - photo(number)).mean()
            assert error < 3.0
    params = [float(v) for v in FISHEYE.split()]
    assert courtyard.meta["intrinsics"] == params[:4]
    assert courtyard.meta["camera_model"] == "THIN_PRISM_FISHEYE"
    assert courtyard.meta["distortion"] == params[4:]
    assert "intrinsics_per_frame" not in courtyard.meta
    assert office.meta["intrinsics"] is None  # no calibration folder


def test_clip_mixing_cameras_records_each_frames_intrinsics(eth3d_root: Path) -> None:
    converter = Eth3dConverter(eth3d_root)
    clips = converter.list_clips("test", clip_length=3)

    courtyard = clips[0]
    assert courtyard.frame_ids == [9, 12, 38]
    fisheye = [float(v) for v in FISHEYE.split()[:4]]
    assert courtyard.extra["intrinsics_per_frame"] == [fisheye, fisheye, [3000, 3001, 8, 6]]
    assert [clip.scene for clip in clips] == ["courtyard"]
    assert converter.skipped_scenes == ["office"]  # only 2 photos


def test_images_txt_photo_lines_are_told_from_point_lines(eth3d_root: Path) -> None:
    names = read_colmap_image_cameras(eth3d_root / "courtyard/dslr_calibration_jpg/images.txt")

    assert names == {"DSC_0038.JPG": 1, "DSC_0009.JPG": 0, "DSC_0012.JPG": 0}


def test_val_split_is_the_first_eight_scenes(eth3d_root: Path) -> None:
    for index in range(8):
        (eth3d_root / f"z{index}/images/dslr_images").mkdir(parents=True)
        (eth3d_root / f"z{index}/ground_truth_depth/dslr_images").mkdir(parents=True)

    converter = Eth3dConverter(eth3d_root)

    assert converter.scenes("val") == ["courtyard", "office"] + [f"z{i}" for i in range(6)]
    assert len(converter.scenes("test")) == 10


def test_depth_of_the_wrong_size_is_refused(eth3d_root: Path) -> None:
    depth_file = eth3d_root / "office/ground_truth_depth/dslr_images/DSC_0005.JPG"
    np.ones((HEIGHT, WIDTH - 1), "<f4").tofile(depth_file)
    converter = Eth3dConverter(eth3d_root)
    spec = converter.list_clips("test", clip_length=1)[-2]

    with pytest.raises(ValueError, match="DSC_0005.JPG holds 720 bytes"):
        converter.load_frame(spec, 0)


def test_missing_depth_folder_names_it(eth3d_root: Path) -> None:
    depth = eth3d_root / "office/ground_truth_depth"
    depth.rename(eth3d_root / "office/depth_moved")

    with pytest.raises(FileNotFoundError, match="office/ground_truth_depth/dslr_images"):
        Eth3dConverter(eth3d_root)


def test_root_without_scenes_shows_the_layout(tmp_path: Path) -> None:
    (tmp_path / "eth3d/courtyard/dslr_images").mkdir(parents=True)

    with pytest.raises(FileNotFoundError, match="images/dslr_images/DSC_0286.JPG"):
        Eth3dConverter(tmp_path / "eth3d")
