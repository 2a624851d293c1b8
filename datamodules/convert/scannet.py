"""ScanNet v2 (evaluation, Video Depth Anything protocol): indoor RGB-D scans, handheld video.

Raw layout (scans from the ScanNet download script, each ``<scene>.sens`` exported into its
scene folder with ScanNet's SensReader, ``reader.py --export_color_images --export_depth_images
--export_intrinsics``)::

    ROOT/scans_test/scene0707_00/color/0.jpg ...                  colour, 1296 x 968 JPEG
    ROOT/scans_test/scene0707_00/depth/0.png ...                  depth, 640 x 480 16-bit PNG
    ROOT/scans_test/scene0707_00/intrinsic/intrinsic_depth.txt    4x4 K of the depth frames
    ROOT/scans_test/scene0707_00/scene0707_00.txt                 scan metadata (fx_depth, ...)
    ROOT/scans/scene0000_00/...                                   the train and val scans

Unit conversion: metres = value / 1000 (millimetres); 0 (no measurement) becomes NaN
(invalid). Indoor: no sky.

Colour and depth sizes: a clip stores depth at its image's size, and ScanNet's colour is about
twice the depth's size. The colour is resized (bilinear, antialiased) to the depth's 640 x 480,
not the depth to the colour's: the depth pixels are the measurement being scored, and enlarging
them (nearest) would store four times the pixels with no more information; Video Depth Anything
and DepthCrafter also score ScanNet at 640 x 480 (their border crop cuts colour and depth alike).
Colour and depth differ in aspect by 0.4 % (1296/968 against 640/480); frames differing by more
than ``MAX_ASPECT_DIFFERENCE`` are refused as mismatched. The depth intrinsics then describe the
stored frames: ``[fx, fy, cx, cy]`` from ``intrinsic/intrinsic_depth.txt``, else from the
``fx_depth``, ``fy_depth``, ``mx_depth``, ``my_depth`` of ``<scene>.txt``, else null.

Crop (``crop`` option): ``benchmark`` (default) cuts the border the benchmark leaves out, 8 rows
top and bottom and 11 columns left and right (``BENCHMARK_CROP``, frames of 618 x 464, the
principal point moved with it); ``none`` keeps whole frames.

Splits: ``test`` is ``scans_test`` (100 scans, scene0707_00 to scene0806_00: the Video Depth
Anything and DepthCrafter benchmark), ``train`` is ``scans``. Frames are numbered as exported
(from 0). Frame-count caps (none by default): Video Depth Anything scores 90 frames, every third
of the first 270 (``--stride 3 --option max_frames=90``, as DepthCrafter), or the first 500
(``--option max_frames=500``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from datamodules.convert.base import ClipSpec, Converter, FrameFiles, register
from datamodules.convert.readers import read_png16, read_rgb
from datamodules.convert.units import BorderCrop, border_crop, pinhole_intrinsics, scaled_depth

DEPTH_UNITS_PER_METRE = 1000.0
"""Stored 16-bit steps per metre of the ScanNet depth PNGs (millimetres)."""

BENCHMARK_CROP = BorderCrop(top=8, bottom=8, left=11, right=11)
"""Border of the 640 x 480 frames left out by Video Depth Anything and DepthCrafter."""

MAX_ASPECT_DIFFERENCE = 0.02
"""Largest relative difference of colour and depth aspect ratios accepted for one frame."""

SPLIT_FOLDERS = {"test": "scans_test", "train": "scans"}
METADATA_INTRINSICS = ("fx_depth", "fy_depth", "mx_depth", "my_depth")


def colour_at_depth_size(rgb: np.ndarray, height: int, width: int, source: Path) -> np.ndarray:
    """Resize a colour frame (bilinear, antialiased) to its depth map's size.

    Raises:
        ValueError: The aspect ratios differ by more than ``MAX_ASPECT_DIFFERENCE``.
    """
    if rgb.shape[:2] == (height, width):
        return rgb
    aspect, depth_aspect = rgb.shape[1] / rgb.shape[0], width / height
    if abs(aspect - depth_aspect) > MAX_ASPECT_DIFFERENCE * depth_aspect:
        raise ValueError(
            f"{source} is {rgb.shape[1]}x{rgb.shape[0]} but its depth is {width}x{height}: "
            "the aspect ratios differ, so they are not one frame; re-export the scan"
        )
    resized = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized)


def read_depth_intrinsics(scene: Path) -> list[float] | None:
    """``[fx, fy, cx, cy]`` of a scan's depth frames, or None when neither source is there.

    Raises:
        ValueError: ``intrinsic_depth.txt`` is not a 4x4 matrix, or the metadata file lacks a
            value; the message names the file.
    """
    matrix_file = scene / "intrinsic" / "intrinsic_depth.txt"
    metadata_file = scene / f"{scene.name}.txt"
    if matrix_file.is_file():
        matrix = np.loadtxt(matrix_file, ndmin=2)
        if matrix.shape != (4, 4):
            raise ValueError(f"{matrix_file} holds a {matrix.shape} array, not a 4x4 matrix")
        return pinhole_intrinsics(matrix)
    if not metadata_file.is_file():
        return None
    values = {}
    for line in metadata_file.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    try:
        return [float(values[key]) for key in METADATA_INTRINSICS]
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"{metadata_file} needs a number for each of {', '.join(METADATA_INTRINSICS)} "
            f"({error!r}); re-download the scan's metadata"
        ) from error


@register
class ScanNetConverter(Converter):
    """ScanNet v2 exported scans as evaluation clips at the depth resolution (module docstring).

    Args:
        root: Folder holding ``scans_test/`` (and ``scans/``).
        max_frames: Keep the first N frames of each scan at the stride (VDA: 90 at stride 3).
        crop: ``"benchmark"`` (the benchmark's border crop) or ``"none"``.
    """

    name = "scannet"
    splits = ("test", "train")
    units = (
        "16-bit PNG millimetres / 1000 = metres; 0 -> NaN (invalid); indoor, no sky; colour "
        "resized to the 640x480 depth; 8-row/11-column border cut unless crop=none"
    )
    layout = (
        "ROOT/scans_test/scene0707_00/color/0.jpg\n"
        "ROOT/scans_test/scene0707_00/depth/0.png\n"
        "ROOT/scans_test/scene0707_00/intrinsic/intrinsic_depth.txt  (or scene0707_00.txt)"
    )

    def __init__(
        self, root: str | Path, max_frames: int | str | None = None, crop: str = "benchmark"
    ) -> None:
        super().__init__(root, max_frames)
        self.crop = border_crop(crop, BENCHMARK_CROP, self.name)
        if not any((self.root / folder).is_dir() for folder in SPLIT_FOLDERS.values()):
            raise self.layout_error(
                self.root / "scans_test", "the 'scans_test' (or 'scans') folder"
            )

    def scans(self, split: str) -> tuple[Path, list[str]]:
        """The folder of a split and its scan names, sorted."""
        self.check_split(split)
        folder = self.root / SPLIT_FOLDERS[split]
        if not folder.is_dir():
            raise self.layout_error(folder, f"the '{split}' split folder")
        return folder, self.scene_folders(folder, "color", ("depth",))

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Cut every scan of ``split`` into clips with the depth intrinsics (after the crop)."""
        folder, names = self.scans(split)
        scenes = []
        for name in names:
            scan = folder / name
            scene = self.frame_files(
                name, scan / "color", r"(\d+)\.jpg", scan / "depth", r"(\d+)\.png"
            )
            intrinsics = read_depth_intrinsics(scan)
            if intrinsics is not None:
                scene.extra["intrinsics"] = self.crop.intrinsics(intrinsics)
            scenes.append(scene)
        return self.window_clips(scenes, clip_length, stride)

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Colour at the depth's size and depth in metres (NaN invalid), both cropped."""
        item: FrameFiles = spec.items[index]
        depth = scaled_depth(read_png16(item.depth), DEPTH_UNITS_PER_METRE)
        rgb = colour_at_depth_size(read_rgb(item.image), *depth.shape, item.image)
        return self.crop.apply(rgb), self.crop.apply(depth)
