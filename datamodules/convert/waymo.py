"""Waymo Open (evaluation): front-camera video with sparse LiDAR depth in `.npy` point lists.

Raw layout (the extracted-frames layout the FlashDepth reference loader reads; ROOT is the
folder of validation segments, ``waymo/val`` in the reference)::

    ROOT/segment-<id>/FRONT/rgb/original/0.jpg, 1.jpg ...   front camera, 1920 x 1280
    ROOT/segment-<id>/FRONT/depth/0.npy, 1.npy ...           LiDAR points of that frame

Depth format: each ``.npy`` is an (N, 3) float array of LiDAR points projected into the front
camera, one row ``[x, y, depth]``: ``x`` the column and ``y`` the row in pixels of the image,
``depth`` in metres.

Unit conversion: a point fills pixel ``(floor(y), floor(x))`` with its depth in metres; when
several points fall in one pixel the nearest is kept. Pixels without a point, points with a
non-finite or non-positive depth, and points outside the image are left NaN (invalid): the map
is sparse. LiDAR has no sky label, so nothing is +inf.

Splits: ``test`` is the 30 validation segments FlashDepth evaluates on (``TEST_SEGMENTS``, a
random sample fixed by the reference code; all must be under ROOT); ``val`` is the first 8
segments under ROOT in sorted order (the validation subset of the reference code). Intrinsics
are not part of this layout and are stored as null.

Frame-count cap: FlashDepth scores the first 200 frames of each scene
(``--option max_frames=200``; the default keeps every frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, FrameFiles, SceneFrames, register
from datamodules.convert.readers import read_npy, read_rgb

IMAGES = Path("FRONT") / "rgb" / "original"
DEPTHS = Path("FRONT") / "depth"
TEST_SEGMENTS = (
    "segment-10203656353524179475_7625_000_7645_000",
    "segment-1024360143612057520_3580_000_3600_000",
    "segment-10289507859301986274_4200_000_4220_000",
    "segment-10689101165701914459_2072_300_2092_300",
    "segment-1071392229495085036_1844_790_1864_790",
    "segment-10837554759555844344_6525_000_6545_000",
    "segment-10868756386479184868_3000_000_3020_000",
    "segment-11048712972908676520_545_000_565_000",
    "segment-11356601648124485814_409_000_429_000",
    "segment-11406166561185637285_1753_750_1773_750",
    "segment-11434627589960744626_4829_660_4849_660",
    "segment-11450298750351730790_1431_750_1451_750",
    "segment-11616035176233595745_3548_820_3568_820",
    "segment-12102100359426069856_3931_470_3951_470",
    "segment-12134738431513647889_3118_000_3138_000",
    "segment-12306251798468767010_560_000_580_000",
    "segment-12374656037744638388_1412_711_1432_711",
    "segment-12496433400137459534_120_000_140_000",
    "segment-12820461091157089924_5202_916_5222_916",
    "segment-12831741023324393102_2673_230_2693_230",
    "segment-12940710315541930162_2660_000_2680_000",
    "segment-13178092897340078601_5118_604_5138_604",
    "segment-13299463771883949918_4240_000_4260_000",
    "segment-13356997604177841771_3360_000_3380_000",
    "segment-13469905891836363794_4429_660_4449_660",
    "segment-13573359675885893802_1985_970_2005_970",
    "segment-1405149198253600237_160_000_180_000",
    "segment-14081240615915270380_4399_000_4419_000",
    "segment-14127943473592757944_2068_000_2088_000",
    "segment-14165166478774180053_1786_000_1806_000",
)
"""The 30 Waymo validation segments of the FlashDepth evaluation (sorted)."""


def splat_lidar_points(points: np.ndarray, height: int, width: int, source: Path) -> np.ndarray:
    """Rasterise projected LiDAR points into a sparse depth map.

    Args:
        points: (N, 3) rows ``[x (column, px), y (row, px), depth (m)]``.
        height: Image height in pixels.
        width: Image width in pixels.
        source: File the points came from (for the error message).

    Returns:
        (H, W) float32 depth in metres; NaN where no valid point falls; the nearest point wins.

    Raises:
        ValueError: ``points`` is not an (N, 3) numeric array.
    """
    if points.ndim != 2 or points.shape[1] != 3 or not np.issubdtype(points.dtype, np.number):
        raise ValueError(
            f"{source} holds a {points.dtype} array of shape {points.shape}; Waymo depth files "
            "must hold (N, 3) rows [x, y, depth in metres]"
        )
    points = points.astype(np.float64)
    with np.errstate(invalid="ignore"):
        cols, rows = np.floor(points[:, 0]), np.floor(points[:, 1])
        keep = (
            np.isfinite(points).all(axis=1)
            & (points[:, 2] > 0)
            & (cols >= 0)
            & (cols < width)
            & (rows >= 0)
            & (rows < height)
        )
    nearest = np.full((height, width), np.inf, dtype=np.float64)
    np.minimum.at(
        nearest, (rows[keep].astype(np.intp), cols[keep].astype(np.intp)), points[keep, 2]
    )
    depth = nearest.astype(np.float32)
    depth[np.isinf(nearest)] = np.nan
    return depth


@register
class WaymoConverter(Converter):
    """Waymo front camera with sparse LiDAR depth as evaluation clips (module docstring)."""

    name = "waymo"
    splits = ("test", "val")
    units = (
        "(N, 3) npy rows [x px, y px, depth m] splatted to pixel (floor y, floor x), nearest "
        "point wins; pixels without a point -> NaN (invalid); no sky"
    )
    layout = (
        "ROOT/segment-<id>/FRONT/rgb/original/0.jpg\n"
        "ROOT/segment-<id>/FRONT/depth/0.npy  ((N, 3) rows [x, y, depth m])"
    )

    def __init__(self, root: str | Path, max_frames: int | str | None = None) -> None:
        super().__init__(root, max_frames)
        self.all_scenes = self.scene_folders(self.root, IMAGES, (DEPTHS,))

    def scenes(self, split: str) -> list[str]:
        """Segment names of a split, sorted.

        Raises:
            FileNotFoundError: ``test`` is asked for and some of its 30 segments are missing.
        """
        if split != "test":
            return self.evaluation_scenes(split, self.all_scenes)
        missing = [name for name in TEST_SEGMENTS if name not in self.all_scenes]
        if missing:
            raise FileNotFoundError(
                f"waymo: the test split needs the 30 validation segments of the FlashDepth "
                f"evaluation; {len(missing)} are not under {self.root} (e.g. "
                f"{missing[0]}/{IMAGES}). Extract them there, or convert split 'val'."
            )
        return list(TEST_SEGMENTS)

    def scene_frames(self, scene: str) -> SceneFrames:
        """Frames of a segment in frame-number order."""
        images, depths = self.root / scene / IMAGES, self.root / scene / DEPTHS
        return self.frame_files(scene, images, r"(\d+)\.jpg", depths, r"(\d+)\.npy")

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Cut every segment of ``split`` into clips."""
        scenes = [self.scene_frames(scene) for scene in self.scenes(split)]
        return self.window_clips(scenes, clip_length, stride)

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Front-camera frame and sparse depth in metres (NaN where no LiDAR point)."""
        item: FrameFiles = spec.items[index]
        rgb = read_rgb(item.image)
        points = read_npy(item.depth)
        return rgb, splat_lidar_points(points, rgb.shape[0], rgb.shape[1], item.depth)
