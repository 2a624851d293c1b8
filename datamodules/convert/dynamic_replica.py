"""Dynamic Replica (Karaev et al., CVPR 2023; rendered indoor stereo videos) -> clip shards.

Raw layout (``--root`` holds the split folders, as written by the official download script)::

    ROOT/train/<seq>_left/images/<seq>_left-0000.png             RGB, 1280x720
    ROOT/train/<seq>_left/depths/<seq>_left_0000.geometric.png   float16 bits in a 16-bit PNG
    ROOT/train/frame_annotations_train.jgz                       gzipped json (optional here)
    ROOT/valid/...  ROOT/test/...

Units: each 16-bit PNG value is the bit pattern of a float16 depth in metres (the dataset writes
``depth.astype(float16).view(uint16)``); the bits are reinterpreted, not scaled. The scenes are
indoor, so there is no sky: 0, negative, NaN and inf are invalid (NaN).

Intrinsics: from the split's ``frame_annotations_<split>.jgz`` when present (the annotation's
``viewpoint`` is in PyTorch3D NDC: with ``s = (W/2, H/2)`` for ``ndc_norm_image_bounds`` or
``min(W, H)/2`` for ``ndc_isotropic``, ``f_px = focal_length * s`` and
``c_px = (W/2, H/2) - principal_point * s``), else null. Left camera only.

Splits: the split folders (``train``, ``valid``, ``test``). Sequence
``009850-3_obj_source_left`` is left out of ``train``: the FlashDepth reference excludes it as
invalid.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, FrameFiles, register
from datamodules.convert.readers import read_float16_png, read_rgb
from datamodules.convert.units import metric_depth

log = logging.getLogger(__name__)

EXCLUDED = {"train": ("009850-3_obj_source_left",)}


@register
class DynamicReplicaConverter(Converter):
    """Dynamic Replica left-camera sequences -> clips; see the module docstring."""

    name = "dynamic_replica"
    splits = ("train", "valid", "test")
    units = "16-bit PNG bits viewed as float16 = metres; 0, NaN, inf invalid (no sky, indoor)"
    layout = (
        "ROOT/train/<seq>_left/images/<seq>_left-0000.png\n"
        "ROOT/train/<seq>_left/depths/<seq>_left_0000.geometric.png\n"
        "ROOT/train/frame_annotations_train.jgz   (and ROOT/valid, ROOT/test alike)"
    )

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        self.require_split_folders()

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Clips of every left-camera sequence of a split, with intrinsics when annotated."""
        split_dir = self.split_folder(split)
        sequences = sorted(
            p
            for p in split_dir.iterdir()
            if p.is_dir() and p.name.endswith("_left") and p.name not in EXCLUDED.get(split, ())
        )
        scenes = [
            self.frame_files(
                folder.name,
                folder / "images",
                rf"{re.escape(folder.name)}-(\d+)\.png",
                folder / "depths",
                rf"{re.escape(folder.name)}_(\d+)\.geometric\.png",
            )
            for folder in sequences
        ]
        clips = self.window_clips(scenes, clip_length, stride)
        cameras = self._annotated_intrinsics(split_dir / f"frame_annotations_{split}.jgz")
        for clip in clips:
            clip.extra["intrinsics"] = cameras.get(clip.items[0].image.name)
        return clips

    @staticmethod
    def _annotated_intrinsics(path: Path) -> dict[str, list[float]]:
        """``{image file name: [fx, fy, cx, cy]}`` in pixels from a frame annotation file."""
        if not path.is_file():
            log.info("dynamic_replica: %s not found; clips get no intrinsics", path)
            return {}
        try:
            with gzip.open(path, "rt", encoding="utf-8") as file:
                frames = json.load(file)
            return {Path(f["image"]["path"]).name: _pixel_intrinsics(f) for f in frames}
        except (OSError, EOFError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is not a readable Dynamic Replica frame annotation file ({error!r}); "
                "re-download it or move it away to convert without intrinsics"
            ) from error

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB and depth in metres (float16 bits) of frame ``index`` of a clip."""
        item: FrameFiles = spec.items[index]
        depth = read_float16_png(item.depth)
        # indoor scenes: inf is a rendering hole, not sky
        return read_rgb(item.image), metric_depth(depth, invalid=np.isinf(depth))


def _pixel_intrinsics(frame: dict[str, Any]) -> list[float]:
    """Convert one annotation's NDC focal length and principal point to pixels."""
    height, width = frame["image"]["size"]
    viewpoint = frame["viewpoint"]
    half = np.array([width, height], dtype=np.float64) / 2.0
    kind = viewpoint.get("intrinsics_format", "ndc_norm_image_bounds").lower()
    if kind == "ndc_isotropic":
        scale = np.full(2, half.min())
    elif kind == "ndc_norm_image_bounds":
        scale = half
    else:
        raise KeyError(f"unknown intrinsics_format {kind!r}")
    focal = np.asarray(viewpoint["focal_length"], dtype=np.float64) * scale
    centre = half - np.asarray(viewpoint["principal_point"], dtype=np.float64) * scale
    return [float(focal[0]), float(focal[1]), float(centre[0]), float(centre[1])]
