"""The converter base: the contract every dataset converter follows, its helpers and registry.

A converter knows one dataset's on-disk layout. :meth:`Converter.list_clips` cuts every scene
into non-overlapping clips of ``clip_length`` frames taken every ``stride`` frames (cheap: file
names only, in a deterministic order); :meth:`Converter.load_frame` decodes one frame into RGB
and depth in metres (+inf sky, NaN invalid). :func:`datamodules.convert.writer.convert` writes
the clips to resumable WebDataset shards ``{name}-{split}-%06d.tar``.

Every converter is written in one dialect: class attributes ``name``, ``splits``, ``units``,
``layout`` (and ``required``); ``__init__`` only checks the layout (``required``,
:meth:`Converter.scene_folders`, :meth:`Converter.require_split_folders`); ``list_clips`` lists
its scenes as :class:`SceneFrames` of per-frame named tuples (:meth:`Converter.frame_files`
pairs numbered image and depth files into :class:`FrameFiles`), cuts them with
:meth:`Converter.window_clips` and adds per-clip metadata (intrinsics through
:func:`datamodules.convert.units.pinhole_intrinsics`); ``load_frame`` returns
:func:`~datamodules.convert.readers.read_rgb` and the depth through
:func:`datamodules.convert.units.metric_depth`. Evaluation sets split their scenes with
:meth:`Converter.evaluation_scenes`. Every converter takes ``max_frames`` (``--option
max_frames=N``, the papers' evaluation caps): each scene keeps its first N frames at the stride.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from datamodules.convert.readers import frames_with_depth, numbered_files
from datamodules.format import MAX_FRAMES_PER_CLIP, Clip, make_key, make_meta

log = logging.getLogger(__name__)


@dataclass
class ClipSpec:
    """One clip to convert: which frames of which scene, and how to find them.

    Attributes:
        dataset: Converter name (``Converter.name``).
        scene: Scene name as the dataset spells it.
        frame_ids: Frame numbers of the clip, as numbered by the dataset.
        stride: Step between consecutive frame numbers of the clip.
        items: Per-frame data the converter needs to load each frame (usually paths).
        extra: JSON-serialisable fields copied into the clip metadata, e.g. ``"intrinsics"``
            ``[fx, fy, cx, cy]`` in pixels of the stored resolution.
    """

    dataset: str
    scene: str
    frame_ids: list[int]
    stride: int
    items: list[Any]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Sample key of the clip in the shards."""
        return make_key(self.dataset, self.scene, self.frame_ids[0])


@dataclass
class SceneFrames:
    """All frames of one scene, before they are cut into clips.

    Attributes:
        scene: Scene name.
        frame_ids: Frame numbers in temporal order.
        items: Per-frame data (paths), one per frame id.
        extra: Metadata shared by every clip of the scene (e.g. intrinsics).
    """

    scene: str
    frame_ids: list[int]
    items: list[Any]
    extra: dict[str, Any] = field(default_factory=dict)


class FrameFiles(NamedTuple):
    """The raw files of one frame: its RGB image and its depth (or disparity) file."""

    image: Path
    depth: Path


VAL_SCENES = 8
"""An evaluation set's ``val`` split: its first 8 scenes, sorted (the reference's validation)."""


class Converter(ABC):
    """Base of the dataset converters.

    Subclasses set ``name``, ``splits``, ``units`` (one line: raw values -> metres, sky, invalid)
    and ``layout`` (the expected raw folder layout, shown in errors), list the paths under the
    root that must exist in ``required``, and implement :meth:`list_clips` and :meth:`load_frame`.

    Args:
        root: Raw dataset folder.
        max_frames: Keep at most this many frames of each scene, its first at the clip stride
            (an int, or its digits from ``--option max_frames=N``); None keeps every frame.

    Raises:
        FileNotFoundError: ``root`` or one of ``required`` is missing; the message names it and
            shows the expected layout.
        ValueError: ``max_frames`` is not a whole number >= 1.
    """

    name: ClassVar[str]
    splits: ClassVar[tuple[str, ...]]
    units: ClassVar[str]
    layout: ClassVar[str]
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, root: str | Path, max_frames: int | str | None = None) -> None:
        self.root = Path(root)
        self.skipped_scenes: list[str] = []
        if max_frames is not None and not (str(max_frames).isdecimal() and int(max_frames) >= 1):
            raise ValueError(
                f"{self.name}: max_frames must be a whole number of frames >= 1, e.g. --option "
                f"max_frames=110 (leave it out to keep every frame), got {max_frames!r}"
            )
        self.max_frames = None if max_frames is None else int(max_frames)
        if not self.root.is_dir():
            raise self.layout_error(self.root, "the raw dataset folder")
        for relative in self.required:
            if not (self.root / relative).exists():
                raise self.layout_error(self.root / relative, f"'{relative}'")

    def layout_error(self, missing: Path, what: str) -> FileNotFoundError:
        """Build the error for a raw folder that does not have the expected layout.

        Args:
            missing: The path that was expected.
            what: Short description of it (e.g. ``"'frames_cleanpass'"``).

        Returns:
            A FileNotFoundError naming the missing path and showing ``layout``.
        """
        return FileNotFoundError(
            f"{self.name}: {what} not found at {missing}. Point --root at the folder laid out "
            f"like this:\n{self.layout}"
        )

    def check_split(self, split: str) -> None:
        """Raise a ValueError naming the known splits when ``split`` is not one of them."""
        if split not in self.splits:
            raise ValueError(
                f"{self.name} has no split '{split}'; known splits: {', '.join(self.splits)}"
            )

    @abstractmethod
    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        """List the clips of a split, in a deterministic order, without decoding pixels.

        Args:
            split: One of ``splits``.
            clip_length: Frames per clip.
            stride: Step between the frames of a clip.

        Returns:
            The clips; scenes shorter than one clip are skipped and named in ``skipped_scenes``.
        """

    @abstractmethod
    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Decode frame ``index`` (0-based within the clip) of a clip.

        Returns:
            RGB (H, W, 3) uint8 and depth (H, W) float32 in metres, +inf sky, NaN invalid.
        """

    def require_split_folders(self) -> None:
        """Raise a layout error unless the root holds at least one split folder."""
        if not any((self.root / split).is_dir() for split in self.splits):
            listing = ", ".join(f"{split}/" for split in self.splits[:2])
            raise self.layout_error(self.root / self.splits[0], f"no split folder ({listing}, ...)")

    def split_folder(self, split: str) -> Path:
        """The folder of a known split under the root (a layout error when it is missing)."""
        self.check_split(split)
        folder = self.root / split
        if not folder.is_dir():
            raise self.layout_error(folder, f"the '{split}' split folder")
        return folder

    def scene_folders(
        self, folder: Path, images: str | Path, others: tuple[str | Path, ...] = ()
    ) -> list[str]:
        """Sorted names of the scene folders in ``folder``: those holding ``images``.

        Args:
            folder: Folder holding one sub-folder per scene.
            images: Path inside a scene folder that marks it as a scene (its images).
            others: Paths every scene folder must hold as well (its depth, cameras).

        Raises:
            FileNotFoundError: A layout error naming the path when no folder holds ``images``
                or a scene lacks one of ``others``.
        """
        names = sorted(path.name for path in folder.iterdir() if (path / images).is_dir())
        if not names:
            raise self.layout_error(folder / "<scene>" / images, "any scene folder")
        for name in names:
            for other in others:
                if not (folder / name / other).is_dir():
                    raise self.layout_error(folder / name / other, f"'{other}' of scene '{name}'")
        return names

    def evaluation_scenes(self, split: str, scenes: list[str]) -> list[str]:
        """Scenes of an evaluation split: all for ``test``, the first ``VAL_SCENES`` for ``val``."""
        self.check_split(split)
        return scenes[:VAL_SCENES] if split == "val" else scenes

    def frame_files(
        self, scene: str, images: Path, image_pattern: str, depths: Path, depth_pattern: str
    ) -> SceneFrames:
        """A scene whose frames pair numbered image files with numbered depth files.

        Args:
            scene: Scene name.
            images: Folder of the images.
            image_pattern: Regular expression of an image name; group 1 is the frame number.
            depths: Folder of the depth (or disparity) files.
            depth_pattern: Regular expression of a depth file name, likewise.

        Raises:
            FileNotFoundError: A folder is missing or an image has no depth file.
        """
        rgb = numbered_files(images, image_pattern)
        depth = numbered_files(depths, depth_pattern)
        ids = frames_with_depth(rgb, depth, f"{self.name}/{scene}")
        return SceneFrames(scene, ids, [FrameFiles(rgb[i], depth[i]) for i in ids])

    def window_clips(
        self, scenes: Iterable[SceneFrames], clip_length: int, stride: int
    ) -> list[ClipSpec]:
        """Cut scenes into non-overlapping clips of ``clip_length`` frames every ``stride``.

        Clip ``k`` of a scene takes the frames at positions ``k*clip_length*stride + j*stride``,
        ``j < clip_length``: no frame is in two clips. Frames left over at the end of a scene are
        dropped; a scene with fewer than ``(clip_length-1)*stride + 1`` frames gives no clip, is
        recorded in ``skipped_scenes`` and reported in one warning.

        ``clip_length=0`` keeps each scene whole (every ``stride``-th frame), the mode for
        evaluation sets, whose metrics fit one scale and shift per video; scenes longer than
        the format's ``MAX_FRAMES_PER_CLIP`` continue in further clips of the same scene.
        With ``max_frames`` set, each scene is first cut to its first ``(max_frames-1)*stride + 1``
        frames (at most ``max_frames`` stored frames) and its clips record ``max_frames``.

        Args:
            scenes: Scenes in the order their clips should appear.
            clip_length: Frames per clip (>= 1), or 0 for whole scenes.
            stride: Step between the frames of a clip (>= 1).

        Returns:
            The clips, scene by scene, in temporal order.
        """
        if clip_length < 0 or stride < 1:
            raise ValueError(
                f"clip_length must be >= 0 (0 = whole scenes) and stride >= 1, "
                f"got {clip_length}, {stride}"
            )
        span = max(clip_length - 1, 0) * stride + 1
        cap = None if self.max_frames is None else (self.max_frames - 1) * stride + 1
        recorded = {} if self.max_frames is None else {"max_frames": self.max_frames}
        clips: list[ClipSpec] = []
        self.skipped_scenes = []
        for scene in scenes:
            count = len(scene.frame_ids) if cap is None else min(len(scene.frame_ids), cap)
            if count < span:
                self.skipped_scenes.append(scene.scene)
                continue
            if clip_length == 0:
                every = list(range(0, count, stride))
                windows = [
                    every[i : i + MAX_FRAMES_PER_CLIP]
                    for i in range(0, len(every), MAX_FRAMES_PER_CLIP)
                ]
            else:
                starts = range(0, count - span + 1, clip_length * stride)
                windows = [list(range(start, start + span, stride)) for start in starts]
            for positions in windows:
                clips.append(
                    ClipSpec(
                        dataset=self.name,
                        scene=scene.scene,
                        frame_ids=[scene.frame_ids[p] for p in positions],
                        stride=stride,
                        items=[scene.items[p] for p in positions],
                        extra={**scene.extra, **recorded},
                    )
                )
        if self.skipped_scenes:
            log.warning(
                "%s: skipped %d scene(s) with fewer than %d frames (clip_length=%d, stride=%d): %s",
                self.name,
                len(self.skipped_scenes),
                span,
                clip_length,
                stride,
                ", ".join(self.skipped_scenes),
            )
        return clips

    def load_clip(self, spec: ClipSpec) -> Clip:
        """Load every frame of a clip and build its metadata.

        Raises:
            ValueError: Frames of the clip differ in size, or depth and RGB sizes differ.
        """
        loaded = [self.load_frame(spec, i) for i in range(len(spec.items))]
        height, width = loaded[0][1].shape[:2]
        sizes = {(rgb.shape, depth.shape) for rgb, depth in loaded}
        if sizes != {((height, width, 3), (height, width))}:
            raise ValueError(
                f"{self.name}: clip {spec.key} (scene {spec.scene}, frames {spec.frame_ids}) "
                f"has RGB/depth shapes {sorted(sizes)}; every frame must be (H, W, 3) RGB with "
                "(H, W) depth of one size"
            )
        extra = dict(spec.extra)
        meta = make_meta(
            spec.dataset,
            spec.scene,
            spec.frame_ids,
            spec.stride,
            extra.pop("intrinsics", None),
            **extra,
        )
        return Clip(
            key=spec.key,
            meta=meta,
            frames=np.stack([rgb for rgb, _ in loaded]).astype(np.uint8),  # (T, H, W, 3)
            depth=np.stack([depth for _, depth in loaded]).astype(np.float32),  # (T, H, W) m
        )


CONVERTERS: dict[str, type[Converter]] = {}
"""Registered converters by name (filled by importing ``datamodules.convert``)."""


def register(cls: type[Converter]) -> type[Converter]:
    """Class decorator adding a converter to :data:`CONVERTERS` under ``cls.name``.

    Raises:
        TypeError: The class lacks ``name``, ``splits``, ``units`` or ``layout``.
        ValueError: Another class is already registered under the same name.
    """
    missing = [attr for attr in ("name", "splits", "units", "layout") if not hasattr(cls, attr)]
    if missing:
        raise TypeError(f"converter {cls.__qualname__} must set {', '.join(missing)}")
    other = CONVERTERS.get(cls.name)
    if other is not None and other is not cls:
        raise ValueError(
            f"converter name '{cls.name}' is taken by {other.__module__}.{other.__qualname__}"
        )
    CONVERTERS[cls.name] = cls
    return cls


def get_converter(name: str) -> type[Converter]:
    """Return the converter class registered as ``name``.

    Raises:
        ValueError: Unknown name; the message lists the known names.
    """
    if name not in CONVERTERS:
        raise ValueError(
            f"unknown converter '{name}'; known converters: {', '.join(sorted(CONVERTERS))}"
        )
    return CONVERTERS[name]
