"""ETH3D high-resolution multi-view (evaluation): DSLR photos with laser-scan depth.

Raw layout (per scene, ``<scene>_dslr_jpg.7z`` and ``<scene>_dslr_depth.7z`` from eth3d.net
extracted side by side; this is the layout the FlashDepth reference loader reads)::

    ROOT/<scene>/images/dslr_images/DSC_0286.JPG ...               distorted DSLR photos
    ROOT/<scene>/ground_truth_depth/dslr_images/DSC_0286.JPG ...   depth (raw floats, see below)
    ROOT/<scene>/dslr_calibration_jpg/cameras.txt, images.txt      COLMAP calibration (optional)

Depth format: despite the ``.JPG`` name, a depth file is a headerless array of little-endian
float32, row-major, one value per pixel of the photo with the same name (6048 x 4032 for the
Nikon D3X), in metres. ETH3D's depth maps match the original (distorted) photos, not the
pre-undistorted ones, so this converter pairs them with ``images/dslr_images``.

Unit conversion: values are metres; +inf (no laser measurement, including the sky: ETH3D has no
sky label) and any other non-finite or non-positive value become NaN (invalid). Nothing is
marked as sky.

Intrinsics: from ``dslr_calibration_jpg`` when present (``images.txt`` gives each photo's camera,
``cameras.txt`` the camera's model and parameters). ETH3D's DSLR model is
``THIN_PRISM_FISHEYE``: ``intrinsics`` holds its pinhole part ``[fx, fy, cx, cy]`` and the clip
also records ``camera_model`` and the remaining ``distortion`` parameters. Without the
calibration folder, ``intrinsics`` is null.

Splits: ``test`` is every scene (13 in the training set); ``val`` is the first 8 scenes in sorted
order (the validation subset of the reference code). Frames are the photos of a scene in
``DSC_`` number order: a multi-view set, not a video.

Frame-count cap: FlashDepth scores the first 30 frames of each scene
(``--option max_frames=30``; the default keeps every frame).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, FrameFiles, SceneFrames, register
from datamodules.convert.readers import read_rgb
from datamodules.convert.units import metric_depth

IMAGES = Path("images") / "dslr_images"
DEPTHS = Path("ground_truth_depth") / "dslr_images"
CALIBRATION = Path("dslr_calibration_jpg")
PINHOLE_FIRST_MODELS = (
    "PINHOLE",
    "OPENCV",
    "OPENCV_FISHEYE",
    "FULL_OPENCV",
    "FOV",
    "THIN_PRISM_FISHEYE",
)
"""COLMAP camera models whose parameters start with fx, fy, cx, cy."""

_PHOTO = r"DSC_(\d+)\.JPG"


class Camera(NamedTuple):
    """One COLMAP camera: model name and parameters (pixels)."""

    model: str
    params: tuple[float, ...]


def read_colmap_cameras(path: Path) -> dict[int, Camera]:
    """Read a COLMAP ``cameras.txt``: ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...`` per line.

    Raises:
        ValueError: A line cannot be parsed; the message names the file and line.
    """
    cameras: dict[int, Camera] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            cameras[int(fields[0])] = Camera(fields[1], tuple(float(v) for v in fields[4:]))
        except (IndexError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a COLMAP camera line: {line!r}") from error
    return cameras


def read_colmap_image_cameras(path: Path) -> dict[str, int]:
    """Map photo file names to camera ids from a COLMAP ``images.txt``.

    Each photo has a line ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` followed by a line of
    2-D points (triples, possibly empty); photo lines are the ones with 10 fields.

    Raises:
        ValueError: A photo line has a non-integer camera id; the message names the file.
    """
    names: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if len(fields) != 10 or fields[0].startswith("#"):
            continue
        try:
            names[Path(fields[9]).name] = int(fields[8])
        except ValueError as error:
            raise ValueError(f"{path}:{number}: bad camera id in {line!r}") from error
    return names


def camera_extra(camera: Camera, source: Path) -> dict[str, Any]:
    """Clip metadata for one COLMAP camera: intrinsics, model and distortion parameters.

    Raises:
        ValueError: The model's parameters do not start with fx, fy, cx, cy.
    """
    if camera.model not in PINHOLE_FIRST_MODELS or len(camera.params) < 4:
        raise ValueError(
            f"{source}: camera model {camera.model} with {len(camera.params)} parameters is not "
            f"one of {PINHOLE_FIRST_MODELS}; cannot read fx, fy, cx, cy from it"
        )
    return {
        "intrinsics": list(camera.params[:4]),
        "camera_model": camera.model,
        "distortion": list(camera.params[4:]),
    }


def read_eth3d_depth(path: Path, height: int, width: int) -> np.ndarray:
    """Read an ETH3D raw depth file and convert it to metres with NaN invalid.

    Args:
        path: Depth file (``.JPG`` name, raw little-endian float32 content).
        height: Height of the matching photo.
        width: Width of the matching photo.

    Returns:
        (H, W) float32 depth in metres, NaN where there is no measurement.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file size does not match the photo size.
    """
    if not path.is_file():
        raise FileNotFoundError(f"ETH3D depth file {path} does not exist")
    size = path.stat().st_size
    if size != 4 * height * width:
        raise ValueError(
            f"{path} holds {size} bytes but its photo is {width}x{height}, which needs "
            f"{4 * height * width} (float32 per pixel): truncated file or mismatched photo"
        )
    depth = np.fromfile(path, dtype="<f4").reshape(height, width).astype(np.float32)
    return metric_depth(depth, sky_beyond_m=np.inf, invalid=np.isinf(depth))  # no sky label


@register
class Eth3dConverter(Converter):
    """ETH3D high-res multi-view training scenes as evaluation clips (module docstring)."""

    name = "eth3d"
    splits = ("test", "val")
    units = (
        "raw little-endian float32 metres (file named .JPG); inf/non-finite/<= 0 -> NaN "
        "(invalid); no sky label"
    )
    layout = (
        "ROOT/<scene>/images/dslr_images/DSC_0286.JPG\n"
        "ROOT/<scene>/ground_truth_depth/dslr_images/DSC_0286.JPG  (raw float32 depth)\n"
        "ROOT/<scene>/dslr_calibration_jpg/{cameras,images}.txt  (optional)"
    )

    def __init__(self, root: str | Path, max_frames: int | str | None = None) -> None:
        super().__init__(root, max_frames)
        self.all_scenes = self.scene_folders(self.root, IMAGES, (DEPTHS,))

    def scenes(self, split: str) -> list[str]:
        """Scene names of a split, sorted."""
        return self.evaluation_scenes(split, self.all_scenes)

    def scene_frames(self, scene: str) -> SceneFrames:
        """Photos of a scene in ``DSC_`` number order."""
        folder = self.root / scene
        return self.frame_files(scene, folder / IMAGES, _PHOTO, folder / DEPTHS, _PHOTO)

    def scene_cameras(self, scene: str) -> tuple[dict[str, int], dict[int, Camera], Path] | None:
        """Photo -> camera id and camera id -> camera of a scene, or None without calibration."""
        folder = self.root / scene / CALIBRATION
        cameras_txt, images_txt = folder / "cameras.txt", folder / "images.txt"
        if not (cameras_txt.is_file() and images_txt.is_file()):
            return None
        return read_colmap_image_cameras(images_txt), read_colmap_cameras(cameras_txt), cameras_txt

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Cut every scene of ``split`` into clips with the camera of their first photo."""
        scenes = [self.scene_frames(scene) for scene in self.scenes(split)]
        clips = self.window_clips(scenes, clip_length, stride)
        calibrations = {scene: self.scene_cameras(scene) for scene in {c.scene for c in clips}}
        for clip in clips:
            calibration = calibrations[clip.scene]
            if calibration is not None:
                clip.extra.update(self.clip_camera(clip, *calibration))
        return clips

    def clip_camera(
        self,
        clip: ClipSpec,
        photo_cameras: dict[str, int],
        cameras: dict[int, Camera],
        source: Path,
    ) -> dict[str, Any]:
        """Camera metadata of a clip; ``intrinsics_per_frame`` when its photos use several cameras.

        Raises:
            ValueError: A photo or its camera is missing from the calibration files.
        """
        per_frame = []
        for item in clip.items:
            camera_id = photo_cameras.get(item.image.name)
            if camera_id not in cameras:
                raise ValueError(
                    f"{source.parent}: photo {item.image.name} or its camera {camera_id} is not in "
                    "images.txt/cameras.txt; re-extract the scene's _dslr_jpg.7z"
                )
            per_frame.append(camera_extra(cameras[camera_id], source))
        extra = dict(per_frame[0])
        if any(frame != per_frame[0] for frame in per_frame):
            extra["intrinsics_per_frame"] = [frame["intrinsics"] for frame in per_frame]
        return extra

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Photo and depth in metres (NaN invalid)."""
        item: FrameFiles = spec.items[index]
        rgb = read_rgb(item.image)
        return rgb, read_eth3d_depth(item.depth, rgb.shape[0], rgb.shape[1])
