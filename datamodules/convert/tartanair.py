"""TartanAir (Wang et al., IROS 2020; AirSim-rendered trajectories) -> clip shards.

Raw layout (``--root`` holds one folder per environment; the official download unpacks each
environment into ``ENV/ENV/``, which is accepted too)::

    ROOT/abandonedfactory/Easy/P000/image_left/000000_left.png          RGB, 640x480
    ROOT/abandonedfactory/Easy/P000/depth_left/000000_left_depth.npy    float32 metres
    ROOT/abandonedfactory/Hard/P001/...
    ROOT/amusement/amusement/Easy/P000/...                              (nested form)

Units: the ``.npy`` depth is float32 metres (z-depth) and is kept as is. TartanAir has no sky
label; its sky renders at roughly 10 km, so depth > 1000 m is sky (+inf). NaN and values <= 0
are invalid (NaN).

Intrinsics: fixed for the whole dataset, ``fx = fy = 320, cx = 320, cy = 240`` pixels.
Split: ``train`` (every trajectory; TartanAir has no official split). The FlashDepth reference
trained without the ``amusement`` environment; pass a root without it to do the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, FrameFiles, register
from datamodules.convert.readers import read_npy, read_rgb
from datamodules.convert.units import metric_depth

TARTANAIR_INTRINSICS = [320.0, 320.0, 320.0, 240.0]  # fx, fy, cx, cy in pixels (640x480)
SKY_BEYOND_M = 1000.0
DIFFICULTIES = ("Easy", "Hard")


@register
class TartanAirConverter(Converter):
    """TartanAir left-camera trajectories -> clips; see the module docstring."""

    name = "tartanair"
    splits = ("train",)
    units = "npy float32 metres as is; > 1000 m = sky (+inf); NaN, <= 0 invalid"
    layout = (
        "ROOT/<env>/Easy/P000/image_left/000000_left.png\n"
        "ROOT/<env>/Easy/P000/depth_left/000000_left_depth.npy\n"
        "(ROOT/<env>/<env>/Easy/... as unpacked by the official download also works)"
    )

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        if not self._trajectories():
            raise self.layout_error(
                self.root / "<env>" / "Easy" / "P000" / "image_left",
                "no trajectory folder with image_left/ and depth_left/",
            )

    def _trajectories(self) -> list[tuple[str, Path]]:
        """``(scene name "env/Easy/P000", folder)`` of every trajectory, sorted by name."""
        found = []
        for env_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            nested = env_dir / env_dir.name
            base = nested if any((nested / d).is_dir() for d in DIFFICULTIES) else env_dir
            for difficulty in DIFFICULTIES:
                level = base / difficulty
                if not level.is_dir():
                    continue
                for trajectory in sorted(p for p in level.iterdir() if p.is_dir()):
                    if (trajectory / "image_left").is_dir():
                        found.append((f"{env_dir.name}/{difficulty}/{trajectory.name}", trajectory))
        return found

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Clips of every trajectory, with the fixed TartanAir intrinsics."""
        self.check_split(split)
        scenes = []
        for scene, folder in self._trajectories():
            frames = self.frame_files(
                scene,
                folder / "image_left",
                r"(\d+)_left\.png",
                folder / "depth_left",
                r"(\d+)_left_depth\.npy",
            )
            frames.extra["intrinsics"] = TARTANAIR_INTRINSICS
            scenes.append(frames)
        return self.window_clips(scenes, clip_length, stride)

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB and depth in metres (> 1000 m sky) of frame ``index`` of a clip."""
        item: FrameFiles = spec.items[index]
        depth = read_npy(item.depth)
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(
                f"{item.depth} holds a {depth.dtype} array of shape {depth.shape}; TartanAir "
                "depth is a 2-D float32 array in metres"
            )
        return read_rgb(item.image), metric_depth(depth, sky_beyond_m=SKY_BEYOND_M)
