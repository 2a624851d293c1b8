"""UrbanSyn (evaluation): photorealistic synthetic driving images with depth and semantics.

Raw layout (the dataset as distributed on huggingface.co/datasets/UrbanSyn/UrbanSyn)::

    ROOT/rgb/rgb_0001.png ...       RGB, 2048 x 1024
    ROOT/depth/depth_0001.exr ...   depth, one float channel (``Y``)
    ROOT/ss/ss_0001.png ...         semantic classes, one 8-bit channel (Cityscapes train ids)

Unit conversion: the EXR stores depth divided by 1e5 (the dataset documentation, followed by the
FlashDepth reference loader): metres = value * 1e5. Pixels of semantic class 10 (sky) and depths
beyond ``SKY_DEPTH_M`` (10 km, the far plane of the renders) are sky (+inf); non-finite or
non-positive depth is NaN (invalid).

Splits: ``test`` is every image, as one scene named ``all`` in file-number order. UrbanSyn images
are independent views rather than a video; the FlashDepth reference evaluation reads them in this
order (and caps them at the first 1000). Intrinsics are not distributed and are stored as null.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from datamodules.convert.base import ClipSpec, Converter, SceneFrames, register
from datamodules.convert.readers import read_exr, read_rgb
from datamodules.convert.units import SKY_DEPTH_M, metric_depth

DEPTH_SCALE_M = 1e5
"""Metres per stored EXR depth unit."""

SKY_CLASS = 10
"""Cityscapes train id of the sky in the ``ss`` label images."""

SCENE = "all"


def read_classes(path: Path) -> np.ndarray:
    """Read a single-channel semantic label PNG as (H, W) integer class ids.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be decoded or has colour channels.
    """
    if not path.is_file():
        raise FileNotFoundError(f"UrbanSyn label file {path} does not exist")
    try:
        with Image.open(path) as image:
            classes = np.asarray(image)
    except OSError as error:
        raise ValueError(f"cannot decode {path} as PNG ({error}): re-download it") from error
    if classes.ndim != 2:
        raise ValueError(
            f"{path} has shape {classes.shape}; the ss labels are one channel of class ids "
            "(the coloured ones live in ss_color, which this converter does not read)"
        )
    return classes


class UrbanSynFrame(NamedTuple):
    """Paths of one UrbanSyn image, its depth and its labels."""

    image: Path
    depth: Path
    classes: Path


@register
class UrbanSynConverter(Converter):
    """UrbanSyn images with metric depth and sky from the labels (module docstring)."""

    name = "urbansyn"
    splits = ("test",)
    units = (
        "EXR depth * 1e5 -> metres; ss class 10 or > 1e4 m -> +inf (sky); non-finite or <= 0 "
        "-> NaN (invalid)"
    )
    layout = "ROOT/rgb/rgb_0001.png\nROOT/depth/depth_0001.exr\nROOT/ss/ss_0001.png"
    required = ("rgb", "depth", "ss")

    def scene_frames(self) -> SceneFrames:
        """Every image, in file-number order."""
        frames = self.frame_files(
            SCENE,
            self.root / "rgb",
            r"rgb_(\d+)\.png",
            self.root / "depth",
            r"depth_(\d+)\.exr",
        )
        frames.items = [
            UrbanSynFrame(f.image, f.depth, self.root / "ss" / f.image.name.replace("rgb_", "ss_"))
            for f in frames.items
        ]
        return frames

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Cut the image sequence into clips."""
        self.check_split(split)
        return self.window_clips([self.scene_frames()], clip_length, stride)

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB and depth in metres (+inf sky from the labels or beyond 10 km, NaN invalid)."""
        item: UrbanSynFrame = spec.items[index]
        raw = read_exr(item.depth)
        classes = read_classes(item.classes)
        if classes.shape != raw.shape:
            raise ValueError(
                f"{item.classes} is {classes.shape} but {item.depth} is {raw.shape}: labels and "
                "depth must have one size"
            )
        depth_m = raw.astype(np.float64) * DEPTH_SCALE_M
        sky = classes == SKY_CLASS
        return read_rgb(item.image), metric_depth(
            depth_m, sky=sky, sky_beyond_m=SKY_DEPTH_M, invalid=np.isinf(depth_m)
        )
