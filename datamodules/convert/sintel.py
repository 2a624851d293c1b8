"""MPI Sintel (evaluation): rendered film frames with exact depth in `.dpt` files.

Raw layout (``MPI-Sintel-complete.zip`` and ``MPI-Sintel-depth-training-20150305.zip`` extracted
into the same folder)::

    ROOT/training/clean/<scene>/frame_0001.png ...     RGB, clean render pass
    ROOT/training/final/<scene>/frame_0001.png ...     RGB, final render pass (motion blur, fog)
    ROOT/training/depth/<scene>/frame_0001.dpt ...     depth
    ROOT/training/camdata_left/<scene>/frame_0001.cam  camera of each frame

Formats (little-endian):
    ``.dpt``: float32 tag 202021.25 (the bytes ``PIEH``), int32 width, int32 height, then
    ``height * width`` float32 depths, row-major, in metres (z-depth along the optical axis).
    ``.cam``: float32 tag 202021.25, 9 float64 (3x3 intrinsic matrix K, row-major), 12 float64
    (3x4 extrinsic matrix [R|t], world to camera).

Unit conversion: depth is already metres. Depth > 10 km (``SKY_DEPTH_M``, the threshold of the
FlashDepth reference loader) is the sky and becomes +inf; non-finite depth and depth < 1e-5 m
become NaN (invalid). Intrinsics ``[K00, K11, K02, K12]`` of the clip's first frame are stored per
clip; when the focal length changes inside a clip, the clip also records
``intrinsics_per_frame``.

Splits: ``test`` is every scene (23 in the training set: the evaluation set of FlashDepth);
``val`` is the first 8 scenes in sorted order (the validation subset of the reference code).
The reference evaluation reads the ``clean`` pass, which is the default here; pass
``render_pass="final"`` for the final pass.

Frame-count cap: FlashDepth scores the first 50 frames of each scene
(``--option max_frames=50``; the default keeps every frame).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, SceneFrames, register
from datamodules.convert.readers import read_rgb
from datamodules.convert.units import SKY_DEPTH_M, metric_depth, pinhole_intrinsics

TAG_FLOAT = 202021.25
"""Sanity tag at the start of every `.dpt` and `.cam` file (the bytes ``PIEH``)."""

MIN_DEPTH_M = 1e-5
"""Depth (metres) below which a Sintel pixel is invalid (NaN)."""

RENDER_PASSES = ("clean", "final")
_CAM_BYTES = 4 + 9 * 8 + 12 * 8


class SintelFrame(NamedTuple):
    """Paths of one Sintel frame."""

    image: Path
    depth: Path
    camera: Path


def read_dpt(path: Path) -> np.ndarray:
    """Read a Sintel `.dpt` depth file.

    Args:
        path: `.dpt` file.

    Returns:
        (H, W) float32 depth as stored (metres).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Wrong tag, impossible size or truncated data; the message names the file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Sintel depth file {path} does not exist")
    data = path.read_bytes()
    if len(data) < 12:
        raise ValueError(f"{path} has {len(data)} bytes: too short for a .dpt header")
    tag = np.frombuffer(data, dtype="<f4", count=1)[0]
    width, height = (int(v) for v in np.frombuffer(data, dtype="<i4", count=2, offset=4))
    if tag != np.float32(TAG_FLOAT):
        raise ValueError(f"{path} has tag {tag}, not {TAG_FLOAT}: not a Sintel .dpt file")
    if width <= 0 or height <= 0 or len(data) != 12 + 4 * width * height:
        raise ValueError(
            f"{path} declares {width}x{height} depths but holds {len(data) - 12} data bytes "
            f"(expected {4 * max(width, 0) * max(height, 0)}): the file is truncated, re-extract it"
        )
    return np.frombuffer(data, dtype="<f4", offset=12).reshape(height, width).astype(np.float32)


def read_cam(path: Path) -> np.ndarray:
    """Read the 3x3 intrinsic matrix of a Sintel `.cam` file.

    Args:
        path: `.cam` file.

    Returns:
        (3, 3) float64 intrinsic matrix K in pixels.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Wrong tag or size; the message names the file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Sintel camera file {path} does not exist")
    data = path.read_bytes()
    if len(data) != _CAM_BYTES:
        raise ValueError(f"{path} has {len(data)} bytes, a Sintel .cam file has {_CAM_BYTES}")
    tag = np.frombuffer(data, dtype="<f4", count=1)[0]
    if tag != np.float32(TAG_FLOAT):
        raise ValueError(f"{path} has tag {tag}, not {TAG_FLOAT}: not a Sintel .cam file")
    return np.frombuffer(data, dtype="<f8", count=9, offset=4).reshape(3, 3).copy()


@register
class SintelConverter(Converter):
    """MPI Sintel training set as evaluation clips (see the module docstring).

    Args:
        root: Folder holding ``training/``.
        render_pass: ``"clean"`` (default, as the FlashDepth reference) or ``"final"``.
    """

    name = "sintel"
    splits = ("test", "val")
    units = (
        ".dpt float32 metres as stored; > 1e4 m -> +inf (sky); non-finite or < 1e-5 m -> NaN "
        "(invalid)"
    )
    layout = (
        "ROOT/training/{clean,final}/<scene>/frame_0001.png\n"
        "ROOT/training/depth/<scene>/frame_0001.dpt\n"
        "ROOT/training/camdata_left/<scene>/frame_0001.cam"
    )
    required = ("training/depth", "training/camdata_left")

    def __init__(
        self, root: str | Path, render_pass: str = "clean", max_frames: int | str | None = None
    ) -> None:
        super().__init__(root, max_frames)
        if render_pass not in RENDER_PASSES:
            raise ValueError(
                f"sintel: render_pass must be one of {RENDER_PASSES}, got {render_pass!r}"
            )
        self.render_pass = render_pass
        self.image_dir = self.root / "training" / render_pass
        if not self.image_dir.is_dir():
            raise self.layout_error(self.image_dir, f"the '{render_pass}' render pass")

    def scenes(self, split: str) -> list[str]:
        """Scene names of a split, sorted."""
        names = sorted(p.name for p in self.image_dir.iterdir() if p.is_dir())
        if not names:
            raise self.layout_error(self.image_dir / "<scene>", "any scene folder")
        return self.evaluation_scenes(split, names)

    def scene_frames(self, scene: str) -> SceneFrames:
        """Frames of one scene, in order, with the paths of their depth and camera files."""
        depth_dir = self.root / "training" / "depth" / scene
        camera_dir = self.root / "training" / "camdata_left" / scene
        for folder in (depth_dir, camera_dir):
            if not folder.is_dir():
                raise self.layout_error(folder, f"the folder of scene '{scene}'")
        frames = self.frame_files(
            scene, self.image_dir / scene, r"frame_(\d+)\.png", depth_dir, r"frame_(\d+)\.dpt"
        )
        frames.items = [
            SintelFrame(f.image, f.depth, camera_dir / f.depth.with_suffix(".cam").name)
            for f in frames.items
        ]
        return frames

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Cut every scene of ``split`` into clips; reads the small `.cam` files for intrinsics."""
        scenes = [self.scene_frames(scene) for scene in self.scenes(split)]
        clips = self.window_clips(scenes, clip_length, stride)
        for clip in clips:
            per_frame = [pinhole_intrinsics(read_cam(item.camera)) for item in clip.items]
            clip.extra["intrinsics"] = per_frame[0]
            if any(k != per_frame[0] for k in per_frame):
                clip.extra["intrinsics_per_frame"] = per_frame
        return clips

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB of the chosen pass and depth in metres (+inf sky, NaN invalid)."""
        item: SintelFrame = spec.items[index]
        raw = read_dpt(item.depth)
        invalid = np.isinf(raw) | (raw < MIN_DEPTH_M)
        return read_rgb(item.image), metric_depth(raw, invalid=invalid, sky_beyond_m=SKY_DEPTH_M)
