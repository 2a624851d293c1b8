"""NYU Depth v2, labelled set (evaluation, Video Depth Anything protocol): indoor Kinect images.

Raw layout (the two files of the NYU Depth v2 page, in one folder)::

    ROOT/nyu_depth_v2_labeled.mat   MATLAB v7.3 (HDF5): images (N, 3, W, H) uint8, depths
                                    (N, W, H) float metres, scenes (1, N) references to names
    ROOT/splits.mat                 MATLAB v5: testNdxs (654), trainNdxs (795), 1-based indices

Which NYUv2: Video Depth Anything scores NYUv2 as video on 8 raw Kinect sequences (basement_0001a,
bookstore_0001a, cafe_0001a, classroom_0001a, kitchen_0003, office_0004, playroom_0002,
study_0002) that its authors turned into metric depth registered to the colour camera with the
NYU MATLAB toolbox; that step is outside any public download (the raw sequences hold unaligned
Kinect disparity) and their released extraction script does not run. This converter reads the
labelled set instead: the aligned metric frames NYUv2 publishes, each image a one-frame video,
as image benchmarks (Depth Anything V2's zero-shot NYUv2) score it. Its numbers compare with
image-based NYUv2 results, not with Video Depth Anything's video NYUv2 table; ``max_frames``
(Video Depth Anything: 500) is accepted like everywhere but every video here has one frame.

Unit conversion: ``depths`` is metres as stored (NYU's in-painted depth, holes filled by their
colourisation); non-finite or <= 0 becomes NaN (invalid). Indoor: no sky. Intrinsics: the NYU
toolbox's colour camera, ``NYU_INTRINSICS``.

Crop (``crop`` option): ``benchmark`` (default) keeps rows 45-470 and columns 41-600 of the
640 x 480 frames (``EIGEN_CROP``, 560 x 426), the region with valid depth and without the white
border of the registered images, which Eigen et al. and Video Depth Anything score; ``none``
keeps whole frames. The principal point moves with the crop.

Splits: ``test`` (654 images) and ``train`` (795) from ``splits.mat``. Image ``n`` (1-based, as
in ``splits.mat``) is scene ``<NYU scene>_<n:04d>`` with frame id ``n``; convert with
``--clip-length 0`` (or 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, SceneFrames, register
from datamodules.convert.readers import _import_optional
from datamodules.convert.units import BorderCrop, border_crop, metric_depth

LABELLED = "nyu_depth_v2_labeled.mat"
SPLITS = "splits.mat"
SPLIT_KEYS = {"test": "testNdxs", "train": "trainNdxs"}
LABELLED_KEYS = ("images", "depths", "scenes")

NYU_INTRINSICS = [
    5.1885790117450188e02,
    5.1946961112127485e02,
    3.2558244941119034e02,
    2.5373616633400465e02,
]
"""``[fx, fy, cx, cy]`` (pixels) of the NYU colour camera (the NYU toolbox's camera_params)."""

EIGEN_CROP = BorderCrop(top=45, bottom=9, left=41, right=39)
"""Rows 45:471 and columns 41:601 of a 640 x 480 frame: the Eigen crop of NYUv2 benchmarks."""


def open_labelled(path: Path) -> Any:
    """Open ``nyu_depth_v2_labeled.mat`` as an HDF5 file (use it as a context manager).

    Raises:
        ValueError: The file is not HDF5 (MATLAB v7.3) or lacks one of ``LABELLED_KEYS``.
    """
    h5py = _import_optional("h5py", f"reading {LABELLED}")
    try:
        mat = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(
            f"cannot read {path} as MATLAB v7.3 / HDF5 ({error}); re-download {LABELLED}"
        ) from error
    missing = [key for key in LABELLED_KEYS if key not in mat]
    if missing:
        mat.close()
        raise ValueError(f"{path} has no {', '.join(missing)}: not NYU Depth v2's {LABELLED}")
    return mat


def read_scene_names(mat: Any) -> list[str]:
    """The scene name of every labelled image, from the ``scenes`` references to char arrays."""
    references = np.asarray(mat["scenes"]).ravel()  # (1, N) -> (N,)
    return ["".join(chr(code) for code in np.asarray(mat[ref]).ravel()) for ref in references]


def read_split_indices(path: Path, split: str) -> list[int]:
    """1-based labelled indices of a split from ``splits.mat``, sorted.

    Raises:
        ValueError: The file cannot be read as a MATLAB file or lacks the split's key.
    """
    scipy_io = _import_optional("scipy.io", f"reading NYUv2's {SPLITS}")
    try:
        table = scipy_io.loadmat(path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cannot read {path} as a MATLAB file ({error}); re-download it"
        ) from error
    key = SPLIT_KEYS[split]
    if key not in table:
        raise ValueError(f"{path} has no {key}: not NYU Depth v2's {SPLITS}")
    return sorted(int(index) for index in np.asarray(table[key]).ravel())


@register
class Nyuv2Converter(Converter):
    """NYU Depth v2 labelled images as one-frame evaluation videos (module docstring).

    Args:
        root: Folder holding ``nyu_depth_v2_labeled.mat`` and ``splits.mat``.
        max_frames: Accepted like every converter's; every video here has one frame.
        crop: ``"benchmark"`` (the Eigen crop) or ``"none"``.
    """

    name = "nyuv2"
    splits = ("test", "train")
    units = (
        "labelled .mat depths, float metres as stored; non-finite or <= 0 -> NaN (invalid); "
        "indoor, no sky; Eigen crop 45:471, 41:601 unless crop=none"
    )
    layout = "ROOT/nyu_depth_v2_labeled.mat  (MATLAB v7.3)\nROOT/splits.mat"
    required = (LABELLED, SPLITS)

    def __init__(
        self, root: str | Path, max_frames: int | str | None = None, crop: str = "benchmark"
    ) -> None:
        super().__init__(root, max_frames)
        self.crop = border_crop(crop, EIGEN_CROP, self.name)

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """One scene of one frame per labelled image of ``split``, in index order.

        Raises:
            ValueError: ``splits.mat`` names an image the labelled file does not have.
        """
        self.check_split(split)
        numbers = read_split_indices(self.root / SPLITS, split)
        with open_labelled(self.root / LABELLED) as mat:
            names = read_scene_names(mat)
        outside = [n for n in numbers if not 1 <= n <= len(names)]
        if outside:
            raise ValueError(
                f"{self.root / SPLITS} names image {outside[0]} but {LABELLED} holds "
                f"{len(names)} images; re-download both files"
            )
        intrinsics = self.crop.intrinsics(NYU_INTRINSICS)
        scenes = [
            SceneFrames(f"{names[n - 1]}_{n:04d}", [n], [n], {"intrinsics": intrinsics})
            for n in numbers
        ]
        return self.window_clips(scenes, clip_length, stride)

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """One labelled image and its depth in metres (NaN invalid), both cropped."""
        number: int = spec.items[index]
        with open_labelled(self.root / LABELLED) as mat:
            rgb = np.asarray(mat["images"][number - 1]).transpose(2, 1, 0)  # (3, W, H) -> (H, W, 3)
            depth_m = np.asarray(mat["depths"][number - 1]).T  # (W, H) -> (H, W)
        rgb = np.ascontiguousarray(self.crop.apply(rgb), dtype=np.uint8)
        return rgb, self.crop.apply(metric_depth(depth_m))
