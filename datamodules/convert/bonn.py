"""Bonn RGB-D Dynamic (evaluation, Video Depth Anything protocol): indoor RGB-D video of people.

Raw layout (each sequence's zip from the dataset page extracted into ROOT; TUM RGB-D format)::

    ROOT/rgbd_bonn_balloon2/rgb/1548266469.07335.png ...     RGB, 640 x 480
    ROOT/rgbd_bonn_balloon2/depth/1548266469.07335.png ...   depth, 16-bit PNG, registered to RGB
    ROOT/rgbd_bonn_balloon2/rgb.txt, depth.txt               lines "timestamp path", "#" comments

Association: RGB and depth are listed separately with their capture times (seconds). Each RGB
frame is paired with the depth frame nearest in time, as TUM's ``associate.py`` does: pairs
closer than ``MAX_TIME_DIFFERENCE_S`` are accepted closest first and each depth frame serves one
RGB frame. An RGB frame left without depth is dropped, with a warning naming the sequence.

Unit conversion: metres = value / 5000; 0 (no measurement) becomes NaN (invalid). Indoor: no
sky. Intrinsics: the dataset's one calibration of the RGB camera, ``[fx, fy, cx, cy]`` =
``BONN_INTRINSICS``, with its ``distortion`` ``[k1, k2, p1, p2, k3]`` recorded alongside.

Frames are numbered by their position in ``rgb.txt`` (time order, from 0). Splits: ``test`` is
the 5 sequences of the DepthCrafter and Video Depth Anything benchmark (``TEST_SEQUENCES``, all
must be under ROOT); ``all`` is every sequence under ROOT. Frame-count caps (none by default):
Video Depth Anything scores 110 frames starting at frame 30 (``--option first_frame=30 --option
max_frames=110``, DepthCrafter's frames 30-139) or the first 500 (``--option max_frames=500``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from datamodules.convert.base import ClipSpec, Converter, FrameFiles, SceneFrames, register
from datamodules.convert.readers import read_png16, read_rgb
from datamodules.convert.units import scaled_depth

log = logging.getLogger(__name__)

DEPTH_UNITS_PER_METRE = 5000.0
"""Stored 16-bit steps per metre of the Bonn (and TUM RGB-D) depth PNGs."""

MAX_TIME_DIFFERENCE_S = 0.02
"""Largest RGB-depth time difference of an associated pair (TUM ``associate.py``'s default)."""

BONN_INTRINSICS = [542.822841, 542.576870, 315.593520, 237.756098]
"""``[fx, fy, cx, cy]`` (pixels) of the Bonn RGB camera, one calibration for every sequence."""

BONN_DISTORTION = [0.039903, -0.099343, -0.000730, -0.000144, 0.0]
"""Radial-tangential distortion ``[k1, k2, p1, p2, k3]`` of that camera (not undone here)."""

TEST_SEQUENCES = (
    "rgbd_bonn_balloon2",
    "rgbd_bonn_crowd2",
    "rgbd_bonn_crowd3",
    "rgbd_bonn_person_tracking",
    "rgbd_bonn_synchronous",
)
"""The 5 sequences of the DepthCrafter / Video Depth Anything Bonn benchmark (sorted)."""


def read_tum_list(path: Path) -> list[tuple[float, str]]:
    """``(timestamp s, relative path)`` entries of a TUM ``rgb.txt``/``depth.txt``, in time order.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A line that is not a comment is not ``timestamp path``; names file and line.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Bonn frame list {path} does not exist; re-extract the sequence")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        try:
            entries.append((float(fields[0]), fields[1]))
        except (IndexError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a 'timestamp path' line: {line!r}") from error
    return sorted(entries)


def associate(
    rgb_times: list[float], depth_times: list[float], max_difference_s: float
) -> dict[int, int]:
    """Pair RGB frames with the depth frames nearest in time (both lists sorted).

    The candidates of an RGB frame are the depth frames just before and after it within
    ``max_difference_s``; candidates are accepted closest first, each frame in one pair at most.

    Returns:
        ``{rgb index: depth index}`` for the RGB frames that found a partner, by RGB index.
    """
    depth = np.asarray(depth_times, dtype=np.float64)
    candidates = []
    for i, time in enumerate(rgb_times):
        after = int(np.searchsorted(depth, time))
        for j in (after - 1, after):
            if 0 <= j < len(depth) and abs(depth[j] - time) <= max_difference_s:
                candidates.append((abs(depth[j] - time), i, j))
    pairs: dict[int, int] = {}
    taken: set[int] = set()
    for _, i, j in sorted(candidates):
        if i not in pairs and j not in taken:
            pairs[i] = j
            taken.add(j)
    return dict(sorted(pairs.items()))


@register
class BonnConverter(Converter):
    """Bonn RGB-D Dynamic sequences as evaluation clips (module docstring).

    Args:
        root: Folder holding the ``rgbd_bonn_*`` sequence folders.
        max_frames: Keep the first N frames of each sequence (Video Depth Anything: 110, 500).
        first_frame: Skip the frames before this position (Video Depth Anything's 110: 30).
    """

    name = "bonn"
    splits = ("test", "all")
    units = "16-bit PNG / 5000 = metres; 0 -> NaN (invalid); indoor, no sky"
    layout = (
        "ROOT/rgbd_bonn_balloon2/rgb/<timestamp>.png\n"
        "ROOT/rgbd_bonn_balloon2/depth/<timestamp>.png\n"
        "ROOT/rgbd_bonn_balloon2/{rgb,depth}.txt"
    )

    def __init__(
        self, root: str | Path, max_frames: int | str | None = None, first_frame: int | str = 0
    ) -> None:
        super().__init__(root, max_frames)
        if not str(first_frame).isdecimal():
            raise ValueError(
                f"bonn: first_frame must be a whole number >= 0 (e.g. --option first_frame=30), "
                f"got {first_frame!r}"
            )
        self.first_frame = int(first_frame)
        self.all_sequences = self.scene_folders(self.root, "rgb", ("depth",))

    def sequences(self, split: str) -> list[str]:
        """Sequence names of a split, sorted.

        Raises:
            FileNotFoundError: ``test`` is asked for and some of its 5 sequences are missing.
        """
        self.check_split(split)
        if split == "all":
            return self.all_sequences
        missing = [name for name in TEST_SEQUENCES if name not in self.all_sequences]
        if missing:
            raise FileNotFoundError(
                f"bonn: the test split needs the 5 sequences of the Video Depth Anything "
                f"benchmark; {len(missing)} are not under {self.root} (e.g. {missing[0]}/rgb). "
                "Extract them there, or convert split 'all'."
            )
        return list(TEST_SEQUENCES)

    def sequence_frames(self, sequence: str) -> SceneFrames:
        """RGB frames of a sequence from ``first_frame`` on, each with its associated depth."""
        folder = self.root / sequence
        rgb = read_tum_list(folder / "rgb.txt")
        depth = read_tum_list(folder / "depth.txt")
        pairs = associate([t for t, _ in rgb], [t for t, _ in depth], MAX_TIME_DIFFERENCE_S)
        unpaired = len(rgb) - len(pairs)
        if unpaired:
            log.warning(
                "bonn/%s: dropped %d of %d RGB frames with no depth frame within %.3f s",
                sequence,
                unpaired,
                len(rgb),
                MAX_TIME_DIFFERENCE_S,
            )
        kept = [i for i in pairs if i >= self.first_frame]
        items = [FrameFiles(folder / rgb[i][1], folder / depth[pairs[i]][1]) for i in kept]
        extra = {"intrinsics": list(BONN_INTRINSICS), "distortion": list(BONN_DISTORTION)}
        return SceneFrames(sequence, kept, items, extra)

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """Cut every sequence of ``split`` into clips."""
        scenes = [self.sequence_frames(sequence) for sequence in self.sequences(split)]
        return self.window_clips(scenes, clip_length, stride)

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB and its associated depth in metres (NaN invalid)."""
        item: FrameFiles = spec.items[index]
        return read_rgb(item.image), scaled_depth(read_png16(item.depth), DEPTH_UNITS_PER_METRE)
