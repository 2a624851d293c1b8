"""KITTI (evaluation, Video Depth Anything protocol): driving video with accumulated LiDAR depth.

Raw layout (KITTI raw ``*_sync.zip`` drives and ``data_depth_annotated.zip`` of the depth
completion / prediction benchmark, extracted into the same folder)::

    ROOT/2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000000.png ...  left colour
    ROOT/2011_09_26/calib_cam_to_cam.txt                     calibration of the day (optional)
    ROOT/val/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000005.png ...
    ROOT/train/<drive>/proj_depth/groundtruth/image_02/...   same for the training drives

Depth format: 16-bit grey PNG of the left colour camera (``image_02``) at the image's size,
accumulated over 11 LiDAR sweeps, so the first and last 5 frames of a drive have none.

Unit conversion: metres = value / 256; 0 (no LiDAR point) becomes NaN (invalid). LiDAR has no
sky label, so nothing is +inf: the sky and everything beyond the scanner's reach is invalid.

Frames: those with a ground-truth file, numbered as the dataset names them (from 5), each paired
with the raw image of the same name. Intrinsics ``[fx, fy, cx, cy]`` come from ``P_rect_02`` of
the day's ``calib_cam_to_cam.txt`` when it is there, else null.

Splits: ``val`` is the 13 drives of ``ROOT/val`` (the Video Depth Anything and DepthCrafter
benchmark), ``train`` the drives of ``ROOT/train``. Frame-count caps (``max_frames``, none by
default): Video Depth Anything scores the first 110 frames of each drive (``--option
max_frames=110``, as DepthCrafter) or the first 500 (``--option max_frames=500``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.convert.base import (
    ClipSpec,
    Converter,
    FrameFiles,
    SceneFrames,
    numbered_files,
    register,
)
from datamodules.convert.readers import read_png16, read_rgb
from datamodules.convert.units import pinhole_intrinsics, scaled_depth

DEPTH_UNITS_PER_METRE = 256.0
"""Stored 16-bit steps per metre of the KITTI depth PNGs."""

GROUND_TRUTH = Path("proj_depth") / "groundtruth" / "image_02"
IMAGES = Path("image_02") / "data"
CALIBRATION = "calib_cam_to_cam.txt"
_FRAME = r"(\d{10})\.png"


def read_rectified_intrinsics(path: Path, camera: str = "02") -> list[float]:
    """``[fx, fy, cx, cy]`` of a rectified camera from a KITTI ``calib_cam_to_cam.txt``.

    Args:
        path: Calibration file; lines ``KEY: values``, ``P_rect_02`` the 3x4 projection matrix.
        camera: Camera number, ``"02"`` for the left colour camera.

    Raises:
        ValueError: The file has no ``P_rect_<camera>`` line of 12 numbers.
    """
    key = f"P_rect_{camera}"
    for line in path.read_text().splitlines():
        name, _, values = line.partition(":")
        if name.strip() == key:
            try:
                matrix = np.array([float(v) for v in values.split()]).reshape(3, 4)
            except ValueError as error:
                raise ValueError(f"{path}: {key} is not 12 numbers: {line!r}") from error
            return pinhole_intrinsics(matrix)
    raise ValueError(f"{path} has no {key} line; re-extract the day's calibration zip")


@register
class KittiConverter(Converter):
    """KITTI drives with annotated LiDAR depth as evaluation clips (module docstring).

    Args:
        root: Folder holding the raw day folders and ``val/`` (and ``train/``).
        max_frames: Keep the first N frames of each drive (Video Depth Anything: 110 or 500).
    """

    name = "kitti"
    splits = ("val", "train")
    units = "16-bit PNG / 256 = metres; 0 -> NaN (invalid, no LiDAR point); no sky label"
    layout = (
        "ROOT/2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000005.png\n"
        "ROOT/2011_09_26/calib_cam_to_cam.txt  (optional)\n"
        "ROOT/val/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000005.png"
    )

    def __init__(self, root: str | Path, max_frames: int | str | None = None) -> None:
        super().__init__(root, max_frames)
        self.require_split_folders()

    def drives(self, split: str) -> list[str]:
        """Drive names of a split, sorted."""
        return self.scene_folders(self.split_folder(split), GROUND_TRUTH)

    def drive_frames(self, split: str, drive: str) -> SceneFrames:
        """Annotated frames of a drive in frame-number order, with their raw images.

        Raises:
            FileNotFoundError: The drive's raw images are missing, or some annotated frame has
                no image; the message names the path.
        """
        images = self.root / drive[:10] / drive / IMAGES
        if not images.is_dir():
            raise self.layout_error(images, f"the raw images of drive '{drive}'")
        depths = numbered_files(self.split_folder(split) / drive / GROUND_TRUTH, _FRAME)
        items = [FrameFiles(images / path.name, path) for path in depths.values()]
        missing = [item.image for item in items if not item.image.is_file()]
        if missing:
            raise FileNotFoundError(
                f"kitti/{drive}: {len(missing)} annotated frame(s) have no raw image (e.g. "
                f"{missing[0]}); extract the drive's *_sync.zip completely"
            )
        scene = SceneFrames(drive, list(depths), items)
        calibration = self.root / drive[:10] / CALIBRATION
        if calibration.is_file():
            scene.extra["intrinsics"] = read_rectified_intrinsics(calibration)
        return scene

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Cut every drive of ``split`` into clips."""
        scenes = [self.drive_frames(split, drive) for drive in self.drives(split)]
        return self.window_clips(scenes, clip_length, stride)

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw left colour image and its annotated depth in metres (NaN invalid)."""
        item: FrameFiles = spec.items[index]
        return read_rgb(item.image), scaled_depth(read_png16(item.depth), DEPTH_UNITS_PER_METRE)
