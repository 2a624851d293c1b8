"""UnrealStereo4K (evaluation): 4K synthetic stereo sequences with exact disparity.

Raw layout (as distributed with SMD-Nets; the FlashDepth reference reads ``Image0``/``Disp0``)::

    ROOT/00000/Image0/00000.png ...        left RGB(A) frames, 3840 x 2160
    ROOT/00000/Disp0/00000.npy ...         left disparity, float32 (H, W), pixels
    ROOT/00000/Extrinsics0/00000.txt ...   left camera of each frame
    ROOT/00000/Extrinsics1/00000.txt ...   right camera of each frame
    ROOT/00001/ ... ROOT/00008/

Camera files: two text lines, the 3x3 intrinsic matrix K (9 numbers, row-major, pixels) and the
3x4 pose [R|t] of the camera (12 numbers, row-major, metres).

Unit conversion: depth = fx * baseline / disparity in metres, with fx = K[0, 0] of the left
camera and baseline = |t_left - t_right|, the distance between the two cameras of that frame
(per the dataset authors 0.2 m indoors and 0.5 m outdoors, scene 00000 excepted). The pair is
rectified (both cameras share R, checked), so this distance does not depend on whether [R|t]
maps world to camera or back. Zero disparity (infinitely far) and depth > 10 km
(``SKY_DEPTH_M``) are sky (+inf); negative or non-finite disparity is NaN (invalid). The
FlashDepth reference evaluates on the raw disparity with scale alignment, so metric depth here
is consistent with it.

Splits: ``test`` is every scene (the reference evaluation uses them all). Intrinsics
``[fx, fy, cx, cy]`` come from the left camera file of each clip's first frame.

Frame-count cap: FlashDepth scores the first 1000 frames of each scene
(``--option max_frames=1000``; the default keeps every frame).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, SceneFrames, register
from datamodules.convert.readers import read_npy, read_rgb
from datamodules.convert.units import SKY_DEPTH_M, disparity_to_depth, pinhole_intrinsics

ROTATION_TOLERANCE = 1e-4
"""Largest element-wise difference between the left and right rotations of a rectified pair."""

CAMERAS = ("Extrinsics0", "Extrinsics1")
"""Sub-folders of the left and right camera files (``<frame>.txt``)."""


class StereoCamera(NamedTuple):
    """One camera file: intrinsic matrix and pose."""

    intrinsics: np.ndarray  # (3, 3) pixels
    pose: np.ndarray  # (3, 4) [R|t], metres


def read_camera(path: Path) -> StereoCamera:
    """Read an UnrealStereo4K camera file (K line, then [R|t] line).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file does not hold 9 + 12 numbers on two lines.
    """
    if not path.is_file():
        raise FileNotFoundError(f"UnrealStereo4K camera file {path} does not exist")
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    try:
        numbers = [[float(v) for v in line] for line in lines]
    except ValueError as error:
        raise ValueError(f"{path} holds a non-numeric value: {error}") from error
    if [len(line) for line in numbers] != [9, 12]:
        raise ValueError(
            f"{path} has lines of {[len(line) for line in numbers]} numbers; an UnrealStereo4K "
            "camera file has 9 (K) then 12 ([R|t])"
        )
    return StereoCamera(np.reshape(numbers[0], (3, 3)), np.reshape(numbers[1], (3, 4)))


def stereo_baseline_m(left: StereoCamera, right: StereoCamera, source: Path) -> float:
    """Distance between the two cameras of a rectified pair, in metres.

    Raises:
        ValueError: The rotations differ (not a rectified pair) or the cameras coincide.
    """
    if np.abs(left.pose[:, :3] - right.pose[:, :3]).max() > ROTATION_TOLERANCE:
        raise ValueError(
            f"{source}: left and right rotations differ; disparity -> depth needs a rectified "
            "pair with one shared rotation"
        )
    baseline = float(np.linalg.norm(left.pose[:, 3] - right.pose[:, 3]))
    if baseline <= 0:
        raise ValueError(f"{source}: left and right cameras coincide (baseline 0 m)")
    return baseline


class UnrealFrame(NamedTuple):
    """Paths of one UnrealStereo4K left frame, its disparity and both cameras."""

    image: Path
    disparity: Path
    left_camera: Path
    right_camera: Path


@register
class UnrealStereo4kConverter(Converter):
    """UnrealStereo4K left view with depth from disparity, as evaluation clips."""

    name = "unrealstereo4k"
    splits = ("test",)
    units = (
        "Disp0 npy disparity px -> depth m = fx * baseline / disp (baseline = distance of the "
        "Extrinsics0/1 cameras); disp 0 or depth > 1e4 m -> +inf (sky); disp < 0 or "
        "non-finite -> NaN (invalid)"
    )
    layout = (
        "ROOT/00000/Image0/00000.png\n"
        "ROOT/00000/Disp0/00000.npy\n"
        "ROOT/00000/Extrinsics0/00000.txt\n"
        "ROOT/00000/Extrinsics1/00000.txt"
    )

    def __init__(self, root: str | Path, max_frames: int | str | None = None) -> None:
        super().__init__(root, max_frames)
        self.all_scenes = self.scene_folders(self.root, "Image0", ("Disp0", *CAMERAS))

    def scene_frames(self, scene: str) -> SceneFrames:
        """Left frames of a scene in frame-number order."""
        folder = self.root / scene
        frames = self.frame_files(
            scene, folder / "Image0", r"(\d+)\.png", folder / "Disp0", r"(\d+)\.npy"
        )
        left, right = (folder / sub for sub in CAMERAS)
        frames.items = [
            UnrealFrame(
                f.image, f.depth, left / f"{f.image.stem}.txt", right / f"{f.image.stem}.txt"
            )
            for f in frames.items
        ]
        return frames

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Cut every scene into clips with the intrinsics of their first frame."""
        scenes = [
            self.scene_frames(scene) for scene in self.evaluation_scenes(split, self.all_scenes)
        ]
        clips = self.window_clips(scenes, clip_length, stride)
        for clip in clips:
            clip.extra["intrinsics"] = pinhole_intrinsics(
                read_camera(clip.items[0].left_camera).intrinsics
            )
        return clips

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Left RGB and depth in metres from its disparity and the frame's stereo cameras."""
        item: UnrealFrame = spec.items[index]
        rgb = read_rgb(item.image)
        disparity = read_npy(item.disparity)
        if disparity.shape != rgb.shape[:2]:
            raise ValueError(
                f"{item.disparity} has shape {disparity.shape}, its image {item.image} is "
                f"{rgb.shape[:2]}: disparity must be one float per pixel of the left image"
            )
        left = read_camera(item.left_camera)
        baseline = stereo_baseline_m(left, read_camera(item.right_camera), item.left_camera)
        fx = float(left.intrinsics[0, 0])
        return rgb, disparity_to_depth(disparity.astype(np.float64), fx, baseline, SKY_DEPTH_M)
