"""Spring (Mehl et al., CVPR 2023; Blender-rendered stereo video) -> clip shards.

Raw layout (``--root`` is the folder holding ``train/``)::

    ROOT/train/0001/frame_left/frame_left_0001.png     RGB, 1920x1080, frames numbered from 1
    ROOT/train/0001/disp1_left/disp1_left_0001.dsp5    HDF5, dataset "disparity", 3840x2160
    ROOT/train/0001/cam_data/intrinsics.txt            one line per frame: fx fy cx cy (pixels)
    ROOT/train/0002/...

Units: Spring gives disparity, not depth. The ground truth has twice the image resolution in
each direction; it is subsampled to the image grid by taking every second row and column
(``disparity[::2, ::2]``, the top-left sample of each 2x2 block, as the FlashDepth reference
does; averaging would blend foreground and background at depth edges). Depth follows from the
stereo geometry: ``depth_m = fx * 0.065 / disparity`` with the 0.065 m baseline and the frame's
own ``fx`` (pixels of the 1920x1080 images). Disparity 0 is sky (+inf); NaN or negative
disparity is invalid (NaN); depth beyond the float16 range (> 65504 m) counts as sky.

Intrinsics: the first frame's ``[fx, fy, cx, cy]`` of each clip. Split: ``train`` (the only
Spring split with ground truth), left camera.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, SceneFrames, register
from datamodules.convert.readers import read_hdf5, read_rgb
from datamodules.convert.units import disparity_to_depth

SPRING_BASELINE_M = 0.065


class SpringFrame(NamedTuple):
    """One Spring frame: its image, its disparity file and its ``[fx, fy, cx, cy]``."""

    image: Path
    disparity: Path
    intrinsics: list[float]


@register
class SpringConverter(Converter):
    """Spring training scenes (left camera) -> clips; see the module docstring."""

    name = "spring"
    splits = ("train",)
    units = (
        "disparity[::2, ::2] (2x GT resolution) -> depth_m = fx * 0.065 / disparity; "
        "disparity 0 = sky (+inf); NaN, < 0 invalid"
    )
    layout = (
        "ROOT/train/0001/frame_left/frame_left_0001.png\n"
        "ROOT/train/0001/disp1_left/disp1_left_0001.dsp5\n"
        "ROOT/train/0001/cam_data/intrinsics.txt"
    )
    required = ("train",)

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Clips of every training scene; items carry each frame's intrinsics."""
        split_dir = self.split_folder(split)
        scenes = []
        for scene_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            files = self.frame_files(
                scene_dir.name,
                scene_dir / "frame_left",
                r"frame_left_(\d+)\.png",
                scene_dir / "disp1_left",
                r"disp1_left_(\d+)\.dsp5",
            )
            table = self._intrinsics(scene_dir / "cam_data" / "intrinsics.txt", files.frame_ids)
            items = [
                SpringFrame(f.image, f.depth, table[i])
                for i, f in zip(files.frame_ids, files.items, strict=True)
            ]
            scenes.append(SceneFrames(files.scene, files.frame_ids, items))
        clips = self.window_clips(scenes, clip_length, stride)
        for clip in clips:
            clip.extra["intrinsics"] = clip.items[0].intrinsics
        return clips

    def _intrinsics(self, path: Path, frame_ids: list[int]) -> dict[int, list[float]]:
        """``{frame number: [fx, fy, cx, cy]}`` from a scene's intrinsics.txt (line n = frame n)."""
        if not path.is_file():
            raise self.layout_error(path, "the camera intrinsics file (needed for fx)")
        try:
            table = np.loadtxt(path, ndmin=2, dtype=np.float64)
        except ValueError as error:
            raise ValueError(f"{path} is not a table of 'fx fy cx cy' lines ({error})") from error
        if table.shape[1] != 4 or (frame_ids and table.shape[0] < max(frame_ids)):
            raise ValueError(
                f"{path} has shape {table.shape}; expected one 'fx fy cx cy' line for each of "
                f"the {max(frame_ids, default=0)} frames of the scene"
            )
        return {i: [float(v) for v in table[i - 1]] for i in frame_ids}

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB and depth in metres from the subsampled disparity of frame ``index``."""
        item: SpringFrame = spec.items[index]
        rgb = read_rgb(item.image)
        disparity = read_hdf5(item.disparity, "disparity").astype(np.float32)
        height, width = rgb.shape[:2]
        if disparity.shape == (2 * height, 2 * width):
            disparity = disparity[::2, ::2]  # (2H, 2W) -> (H, W), top-left of each 2x2 block
        elif disparity.shape != (height, width):
            raise ValueError(
                f"{item.disparity} holds disparity of shape {disparity.shape}; expected "
                f"{(2 * height, 2 * width)} (twice the image {item.image} size) or "
                f"{(height, width)}"
            )
        return rgb, disparity_to_depth(disparity, item.intrinsics[0], SPRING_BASELINE_M)
