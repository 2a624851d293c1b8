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

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, FrameFiles, register
from datamodules.convert.readers import read_exr, read_rgb
from datamodules.convert.units import metric_depth

GTA_UNITS_PER_METRE = 10.0
VAL_SCENES = ("0118", "0119")


@register
class MVSSynthConverter(Converter):
    """MVS-Synth scenes -> clips; see the module docstring for layout and units."""

    name = "mvs_synth"
    splits = ("train", "val")
    units = "EXR value / 10 = metres (GTA V units); +inf = sky; NaN, <= 0 invalid"
    layout = (
        "ROOT (= GTAV_1080, GTAV_720 or GTAV_540)/\n"
        "  0000/images/0000.png  0000/depths/0000.exr  0000/poses/0000.json\n"
        "  0001/ ... (numbered scene folders)"
    )

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        if not self._scenes():
            raise self.layout_error(
                self.root / "0000", "no numbered scene folder with images/ and depths/"
            )

    def _scenes(self) -> list[str]:
        """Numbered scene folders holding ``images/`` and ``depths/``, in numeric order."""
        return [
            name
            for name in sorted((p.name for p in self.root.iterdir() if p.name.isdigit()), key=int)
            if (self.root / name / "images").is_dir() and (self.root / name / "depths").is_dir()
        ]

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Clips of the ``train`` or ``val`` scenes; intrinsics from the first frame's pose."""
        self.check_split(split)
        scenes = [
            self.frame_files(
                scene,
                self.root / scene / "images",
                r"(\d+)\.(?:png|jpg|jpeg)",
                self.root / scene / "depths",
                r"(\d+)\.exr",
            )
            for scene in self._scenes()
            if (scene in VAL_SCENES) == (split == "val")
        ]
        clips = self.window_clips(scenes, clip_length, stride)
        for clip in clips:
            pose = self.root / clip.scene / "poses" / f"{clip.frame_ids[0]:04d}.json"
            clip.extra["intrinsics"] = self._intrinsics(pose)
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
        item: FrameFiles = spec.items[index]
        raw = read_exr(item.depth)
        return read_rgb(item.image), metric_depth(raw / GTA_UNITS_PER_METRE)
