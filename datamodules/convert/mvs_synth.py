"""MVS-Synth (Huang et al., CVPR 2018; frames rendered in GTA V) -> clip shards.

Raw layout (``--root`` is one resolution folder: ``GTAV_1080``, ``GTAV_720`` or ``GTAV_540``)::

    ROOT/0000/images/0000.png    RGB (PNG; JPEG also accepted)
    ROOT/0000/depths/0000.exr    depth, one float32 channel (``Y``)
    ROOT/0000/poses/0000.json    {"f_x", "f_y", "c_x", "c_y": pixels, "extrinsic": 4x4}
    ROOT/0001/...                120 numbered scenes of 100 frames

Units: the EXR values are in GTA V units of 0.1 m: ``depth_m = value / 10``. MVS-Synth does not
state the unit; the FlashDepth reference loader and MapAnything's converter both divide by 10,
which they checked against the sizes of cars and people. ``+inf`` is sky (the dataset's own
convention) and stays ``+inf``; NaN and values <= 0 are invalid (NaN).

Intrinsics: ``[f_x, f_y, c_x, c_y]`` of the first frame of each clip (pixels of the stored images).

Splits: ``val`` = scenes 0118 and 0119, ``train`` = every other scene (the held-out pair of the
FlashDepth reference).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np

from datamodules.convert.base import (
    ClipSpec,
    Converter,
    SceneFrames,
    frames_with_depth,
    metric_depth,
    numbered_files,
    register,
)
from datamodules.convert.readers import read_exr, read_rgb

GTA_UNITS_PER_METRE = 10.0
VAL_SCENES = ("0118", "0119")


@register
class MVSSynthConverter(Converter):
    """MVS-Synth scenes -> clips; see the module docstring for layout and units."""

    name: ClassVar[str] = "mvs_synth"
    splits: ClassVar[tuple[str, ...]] = ("train", "val")
    units: ClassVar[str] = "EXR value / 10 = metres (GTA V units); +inf = sky; NaN, <= 0 invalid"
    layout: ClassVar[str] = (
        "ROOT (= GTAV_1080, GTAV_720 or GTAV_540)/\n"
        "  0000/images/0000.png  0000/depths/0000.exr  0000/poses/0000.json\n"
        "  0001/ ... (numbered scene folders)"
    )

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        if not self._scene_dirs():
            raise self.layout_error(
                self.root / "0000", "no numbered scene folder with images/ and depths/"
            )

    def _scene_dirs(self) -> list[Path]:
        """Numbered scene folders holding ``images/`` and ``depths/``, in numeric order."""
        scenes = [
            path
            for path in self.root.iterdir()
            if path.name.isdigit() and (path / "images").is_dir() and (path / "depths").is_dir()
        ]
        return sorted(scenes, key=lambda path: int(path.name))

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Clips of the ``train`` or ``val`` scenes; intrinsics from the first frame's pose."""
        self.check_split(split)
        scenes = []
        for scene_dir in self._scene_dirs():
            if (scene_dir.name in VAL_SCENES) != (split == "val"):
                continue
            rgb = numbered_files(scene_dir / "images", r"(\d+)\.(?:png|jpg|jpeg)")
            depth = numbered_files(scene_dir / "depths", r"(\d+)\.exr")
            ids = frames_with_depth(rgb, depth, f"{self.name}/{scene_dir.name}")
            items = [(rgb[i], depth[i], scene_dir / "poses" / f"{i:04d}.json") for i in ids]
            scenes.append(SceneFrames(scene_dir.name, ids, items))
        clips = self.window_clips(scenes, clip_length, stride)
        for clip in clips:
            clip.extra["intrinsics"] = self._intrinsics(clip.items[0][2])
        return clips

    def _intrinsics(self, pose_path: Path) -> list[float] | None:
        """``[f_x, f_y, c_x, c_y]`` from a pose json, or None when the file is absent."""
        if not pose_path.is_file():
            return None
        try:
            pose = json.loads(pose_path.read_text())
            return [float(pose[key]) for key in ("f_x", "f_y", "c_x", "c_y")]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{pose_path} is not an MVS-Synth pose json with f_x, f_y, c_x, c_y ({error!r})"
            ) from error

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB and depth in metres (raw / 10, +inf sky) of frame ``index`` of a clip."""
        rgb_path, depth_path, _ = spec.items[index]
        raw = read_exr(depth_path)
        return read_rgb(rgb_path), metric_depth(raw / GTA_UNITS_PER_METRE)
