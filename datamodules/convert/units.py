"""From raw dataset values to the shard conventions: metres, +inf sky, NaN invalid, intrinsics.

Every converter brings its raw depth (metres, scaled units or stereo disparity) to metres through
:func:`metric_depth`, directly or through :func:`disparity_to_depth` (Spring, UnrealStereo4K),
so the rules for sky and invalid pixels are written once; the rendered evaluation sets (Sintel,
UnrealStereo4K, UrbanSyn) share the sky threshold :data:`SKY_DEPTH_M`.
:func:`pinhole_intrinsics` reads ``[fx, fy, cx, cy]`` from a camera matrix (Sintel,
UnrealStereo4K, PointOdyssey, KITTI, ScanNet). The depth sensors' 16-bit PNGs (KITTI, Bonn,
ScanNet) go through :func:`scaled_depth`; :class:`BorderCrop` cuts a benchmark's invalid border
off a frame and its intrinsics (ScanNet, NYUv2). Each converter's module docstring states its
own conversion.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from datamodules.format import FLOAT16_MAX_M

SKY_DEPTH_M = 1e4
"""Depth (metres) beyond which a pixel of a rendered evaluation set (Sintel, UnrealStereo4K,
UrbanSyn) is sky (+inf): the far background of the renders, the FlashDepth reference's threshold."""


def metric_depth(
    depth_m: np.ndarray,
    sky: np.ndarray | None = None,
    sky_beyond_m: float = FLOAT16_MAX_M,
    invalid: np.ndarray | None = None,
) -> np.ndarray:
    """Bring a depth map in metres to the shard conventions (+inf sky, NaN invalid).

    The masks are computed in the input's precision, then the map is cast to float32.

    Args:
        depth_m: (H, W) depth in metres.
        sky: Optional (H, W) bool mask of sky pixels (sky wins over invalid).
        sky_beyond_m: Valid depths above this (and +inf) count as sky; the default, the
            float16 maximum, only catches values the shards cannot store as finite.
        invalid: Optional (H, W) bool mask of pixels the source marks invalid, e.g. its +inf
            where +inf is a hole rather than the sky.

    Returns:
        (H, W) float32 metres: +inf for sky; NaN where the depth is NaN, -inf, <= 0 or marked
        invalid.
    """
    depth_m = np.asarray(depth_m)
    bad = np.isnan(depth_m) | (depth_m <= 0)
    if invalid is not None:
        bad |= invalid
    far = ~bad & (depth_m > sky_beyond_m)
    if sky is not None:
        far |= sky
    depth = depth_m.astype(np.float32)  # a copy
    depth[bad] = np.nan
    depth[far] = np.inf
    return depth


def disparity_to_depth(
    disparity: np.ndarray, fx: float, baseline_m: float, sky_beyond_m: float = FLOAT16_MAX_M
) -> np.ndarray:
    """Depth in metres from stereo disparity in pixels: ``fx * baseline / disparity``.

    Computed in the dtype of ``disparity``. Zero disparity (infinitely far) and depth beyond
    ``sky_beyond_m`` are sky (+inf); negative or non-finite disparity is invalid (NaN).

    Args:
        disparity: (H, W) disparity in pixels.
        fx: Focal length in pixels.
        baseline_m: Stereo baseline in metres.
        sky_beyond_m: Depth (metres) beyond which a pixel is sky.

    Returns:
        (H, W) float32 depth in metres.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_m = fx * baseline_m / disparity
    return metric_depth(depth_m, sky=disparity == 0, sky_beyond_m=sky_beyond_m)


def pinhole_intrinsics(matrix: np.ndarray) -> list[float]:
    """``[fx, fy, cx, cy]`` in pixels of a 3x3 intrinsic matrix ``K``."""
    return [float(matrix[0, 0]), float(matrix[1, 1]), float(matrix[0, 2]), float(matrix[1, 2])]


def scaled_depth(values: np.ndarray, units_per_metre: float) -> np.ndarray:
    """Metres from a depth map stored as integer steps, the 16-bit PNG of depth sensors.

    ``metres = value / units_per_metre`` (KITTI 256, Bonn 5000, ScanNet 1000); 0, the sensors'
    "no measurement", becomes NaN (invalid). Nothing is sky: these sensors have no sky label.

    Args:
        values: (H, W) stored integer values (uint16).
        units_per_metre: Stored steps per metre.

    Returns:
        (H, W) float32 depth in metres, NaN where the value is 0.
    """
    return metric_depth(np.asarray(values, dtype=np.float64) / units_per_metre)


class BorderCrop(NamedTuple):
    """Pixels cut off each side of a frame: a benchmark's crop of a border without valid depth."""

    top: int
    bottom: int
    left: int
    right: int

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Crop an (H, W, ...) image or depth map to (H - top - bottom, W - left - right, ...).

        Raises:
            ValueError: The frame is not larger than the border.
        """
        height, width = frame.shape[:2]
        if height <= self.top + self.bottom or width <= self.left + self.right:
            raise ValueError(
                f"a {height}x{width} frame is too small for the border crop {self}; pass "
                "crop=none (--option crop=none) to keep whole frames"
            )
        return frame[self.top : height - self.bottom, self.left : width - self.right]

    def intrinsics(self, intrinsics: list[float]) -> list[float]:
        """``[fx, fy, cx, cy]`` of the cropped frame: the principal point moves with the cut."""
        fx, fy, cx, cy = intrinsics
        return [fx, fy, cx - self.left, cy - self.top]


CROP_OPTIONS = ("benchmark", "none")
"""Values of a converter's ``crop`` option: the benchmark's border crop, or whole frames."""


def border_crop(option: str, benchmark: BorderCrop, dataset: str) -> BorderCrop:
    """The crop a converter applies for its ``crop`` option (``--option crop=none``).

    Args:
        option: ``"benchmark"`` (the benchmark's border) or ``"none"`` (whole frames).
        benchmark: The benchmark's border crop.
        dataset: Converter name, for the error message.

    Raises:
        ValueError: ``option`` is not one of ``CROP_OPTIONS``.
    """
    if option not in CROP_OPTIONS:
        raise ValueError(
            f"{dataset}: crop must be one of {', '.join(CROP_OPTIONS)} (--option crop=none keeps "
            f"whole frames), got {option!r}"
        )
    return benchmark if option == "benchmark" else BorderCrop(0, 0, 0, 0)
