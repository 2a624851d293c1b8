"""PointOdyssey (Zheng et al., ICCV 2023; long Blender-rendered videos) -> clip shards.

Raw layout (``--root`` holds the split folders)::

    ROOT/train/<scene>/rgbs/rgb_00000.jpg        RGB, 960x540
    ROOT/train/<scene>/depths/depth_00000.png    16-bit grey PNG
    ROOT/train/<scene>/anno.npz                  "intrinsics": (N, 3, 3) per frame (optional here)
    ROOT/val/...  ROOT/test/...  ROOT/sample/...

Units: ``depth_m = value / 65535 * 1000`` (the PNG spans 0..1000 m, PointOdyssey's
reprojection code). Value 0 is invalid (NaN); the saturated value 65535 (1000 m and beyond: the
rendered world background) is sky (+inf).

Intrinsics: ``[fx, fy, cx, cy]`` of the clip's first frame from ``anno.npz`` when the scene has
it, else null. Splits: the split folders present (``train``, ``val``, ``test``, ``sample``);
every scene of a split is converted (the FlashDepth reference trained on 33 of the training
scenes, CUT3R's selection).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, FrameFiles, register
from datamodules.convert.readers import read_png16, read_rgb
from datamodules.convert.units import metric_depth, pinhole_intrinsics

MAX_DEPTH_M = 1000.0
PNG_MAX = 65535


@register
class PointOdysseyConverter(Converter):
    """PointOdyssey scenes -> clips; see the module docstring."""

    name = "pointodyssey"
    splits = ("train", "val", "test", "sample")
    units = "16-bit PNG value / 65535 * 1000 = metres; 0 invalid (NaN); 65535 = sky (+inf)"
    layout = (
        "ROOT/train/<scene>/rgbs/rgb_00000.jpg\n"
        "ROOT/train/<scene>/depths/depth_00000.png\n"
        "ROOT/train/<scene>/anno.npz   (and ROOT/val, ROOT/test, ROOT/sample alike)"
    )

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.require_split_folders()

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Clips of every scene of a split, with per-clip intrinsics from anno.npz."""
        split_dir = self.split_folder(split)
        scenes = [
            self.frame_files(
                scene_dir.name,
                scene_dir / "rgbs",
                r"rgb_(\d+)\.jpg",
                scene_dir / "depths",
                r"depth_(\d+)\.png",
            )
            for scene_dir in sorted(p for p in split_dir.iterdir() if (p / "rgbs").is_dir())
        ]
        clips = self.window_clips(scenes, clip_length, stride)
        intrinsics: dict[str, np.ndarray | None] = {}
        for clip in clips:
            if clip.scene not in intrinsics:
                intrinsics[clip.scene] = self._intrinsics(split_dir / clip.scene / "anno.npz")
            matrices = intrinsics[clip.scene]
            first = clip.frame_ids[0]
            if matrices is not None and first < len(matrices):
                clip.extra["intrinsics"] = pinhole_intrinsics(matrices[first])
        return clips

    @staticmethod
    def _intrinsics(anno_path: Path) -> np.ndarray | None:
        """(N, 3, 3) per-frame camera matrices from anno.npz, or None when not available."""
        if not anno_path.is_file():
            return None
        try:
            with np.load(anno_path, allow_pickle=False) as anno:
                if "intrinsics" not in anno.files:
                    return None
                matrices = anno["intrinsics"]
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"cannot read 'intrinsics' from {anno_path} ({error}); re-download the scene"
            ) from error
        if matrices.ndim != 3 or matrices.shape[1:] != (3, 3):
            raise ValueError(f"{anno_path}: 'intrinsics' has shape {matrices.shape}, not (N, 3, 3)")
        return matrices

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB and depth in metres (value / 65535 * 1000) of frame ``index`` of a clip."""
        item: FrameFiles = spec.items[index]
        raw = read_png16(item.depth)
        depth_m = raw.astype(np.float32) / PNG_MAX * MAX_DEPTH_M  # 0 -> 0 m -> NaN below
        return read_rgb(item.image), metric_depth(depth_m, sky=raw == PNG_MAX)
