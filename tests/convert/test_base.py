"""Tests of the converter base.

Clip windows, frame caps, clip loading, registry, layout errors, helpers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import datamodules.convert as convert_package
from datamodules.convert import base, convert
from datamodules.convert.base import (
    ClipSpec,
    Converter,
    FrameFiles,
    SceneFrames,
    frames_with_depth,
    get_converter,
    numbered_files,
)

HEIGHT, WIDTH = 6, 8


class ToyConverter(Converter):
    """In-memory scenes ``a`` (5 frames), ``b`` (3), ``c`` (1); depth of frame i is i+1 m."""

    name: ClassVar[str] = "toy"
    splits: ClassVar[tuple[str, ...]] = ("train",)
    units: ClassVar[str] = "frame number + 1 = metres; pixel (0, 0) sky, (0, 1) invalid"
    layout: ClassVar[str] = "ROOT/scenes/"
    required: ClassVar[tuple[str, ...]] = ("scenes",)
    lengths: ClassVar[dict[str, int]] = {"a": 5, "b": 3, "c": 1}

    def __init__(
        self, root: str | Path, fail_on: str | None = None, max_frames: int | str | None = None
    ) -> None:
        super().__init__(root, max_frames)
        self.loaded: list[str] = []
        self.fail_on = fail_on

    def list_clips(self, split: str, clip_length: int, stride: int = 1) -> list[ClipSpec]:
        self.check_split(split)
        scenes = [
            SceneFrames(name, list(range(10, 10 + n)), [f"{name}{i}" for i in range(n)])
            for name, n in self.lengths.items()
        ]
        clips = self.window_clips(scenes, clip_length, stride)
        for clip in clips:
            clip.extra["intrinsics"] = [100.0, 101.0, 4.0, 3.0]
        return clips

    def load_frame(self, spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        if spec.key == self.fail_on:
            raise OSError(f"cannot read {spec.items[index]}")
        if index == 0:
            self.loaded.append(spec.key)
        frame_id = spec.frame_ids[index]
        rgb = np.full((HEIGHT, WIDTH, 3), frame_id * 10, dtype=np.uint8)
        depth = np.full((HEIGHT, WIDTH), frame_id + 1.0, dtype=np.float32)
        depth[0, 0], depth[0, 1] = np.inf, np.nan
        return rgb, depth


@pytest.fixture
def toy(tmp_path: Path) -> ToyConverter:
    (tmp_path / "raw" / "scenes").mkdir(parents=True)
    return ToyConverter(tmp_path / "raw")


def test_windows_are_non_overlapping_and_short_scenes_are_skipped(toy: ToyConverter) -> None:
    clips = toy.list_clips("train", clip_length=2, stride=1)
    assert [(c.scene, c.frame_ids) for c in clips] == [
        ("a", [10, 11]),
        ("a", [12, 13]),
        ("b", [10, 11]),
    ]
    assert clips[1].items == ["a2", "a3"]
    assert toy.skipped_scenes == ["c"]


def test_windows_with_stride_take_every_other_frame(toy: ToyConverter) -> None:
    clips = toy.list_clips("train", clip_length=2, stride=2)
    assert [(c.scene, c.frame_ids, c.stride) for c in clips] == [
        ("a", [10, 12], 2),
        ("b", [10, 12], 2),
    ]
    assert toy.skipped_scenes == ["c"]
    clips = toy.list_clips("train", clip_length=3, stride=2)
    assert [c.frame_ids for c in clips] == [[10, 12, 14]]
    assert toy.skipped_scenes == ["b", "c"]


def test_bad_window_sizes_are_refused(toy: ToyConverter) -> None:
    with pytest.raises(ValueError, match="clip_length must be >= 0"):
        toy.list_clips("train", clip_length=-1)
    with pytest.raises(ValueError, match="stride >= 1"):
        toy.list_clips("train", clip_length=2, stride=0)


def test_clip_length_zero_keeps_whole_scenes(toy: ToyConverter, monkeypatch) -> None:
    clips = toy.list_clips("train", clip_length=0, stride=1)
    assert [(c.scene, c.frame_ids) for c in clips] == [
        ("a", [10, 11, 12, 13, 14]),
        ("b", [10, 11, 12]),
        ("c", [10]),
    ]
    assert [c.frame_ids for c in toy.list_clips("train", clip_length=0, stride=2)] == [
        [10, 12, 14],
        [10, 12],
        [10],
    ]
    # scenes longer than the format's per-clip limit continue in further clips
    monkeypatch.setattr("datamodules.convert.base.MAX_FRAMES_PER_CLIP", 2)
    clips = toy.list_clips("train", clip_length=0)
    assert [(c.scene, c.frame_ids) for c in clips][:3] == [
        ("a", [10, 11]),
        ("a", [12, 13]),
        ("a", [14]),
    ]


def test_max_frames_keeps_the_first_frames_of_each_scene_at_the_stride(tmp_path: Path) -> None:
    (tmp_path / "raw" / "scenes").mkdir(parents=True)
    toy = ToyConverter(tmp_path / "raw", max_frames="3")  # as --option max_frames=3 passes it

    assert toy.max_frames == 3
    whole = toy.list_clips("train", clip_length=0)
    assert [(c.scene, c.frame_ids) for c in whole] == [
        ("a", [10, 11, 12]),  # 5 frames, the first 3 kept
        ("b", [10, 11, 12]),
        ("c", [10]),
    ]
    assert all(c.extra["max_frames"] == 3 for c in whole)
    strided = toy.list_clips("train", clip_length=0, stride=2)
    assert [c.frame_ids for c in strided] == [[10, 12, 14], [10, 12], [10]]  # 3 stored frames
    windows = toy.list_clips("train", clip_length=2)
    assert [(c.scene, c.frame_ids) for c in windows] == [("a", [10, 11]), ("b", [10, 11])]
    assert toy.skipped_scenes == ["c"]
    clip = toy.load_clip(whole[0])
    assert clip.meta["max_frames"] == 3 and clip.meta["frame_ids"] == [10, 11, 12]
    assert "max_frames" not in ToyConverter(toy.root).list_clips("train", 0)[0].extra


@pytest.mark.parametrize("value", ["0", "-2", "2.5", "all", 0])
def test_max_frames_that_is_not_a_positive_count_is_refused(tmp_path: Path, value) -> None:
    (tmp_path / "raw" / "scenes").mkdir(parents=True)

    with pytest.raises(ValueError, match=r"toy: max_frames must be a whole number.*>= 1"):
        ToyConverter(tmp_path / "raw", max_frames=value)


def test_manifest_records_the_frame_cap_and_a_new_cap_is_refused(tmp_path: Path) -> None:
    (tmp_path / "raw" / "scenes").mkdir(parents=True)
    report = convert(
        ToyConverter(tmp_path / "raw", max_frames=2), tmp_path / "out", "train", 0, progress=False
    )
    manifest = json.loads((tmp_path / "out" / "toy-train.manifest.json").read_text())

    assert report.clips_written == 3 and manifest["max_frames"] == 2
    with pytest.raises(FileExistsError, match="max_frames: existing 2, requested 4"):
        convert(ToyConverter(tmp_path / "raw", max_frames=4), tmp_path / "out", "train", 0)
    convert(ToyConverter(tmp_path / "raw"), tmp_path / "all", "train", 0, progress=False)
    manifest = json.loads((tmp_path / "all" / "toy-train.manifest.json").read_text())
    assert "max_frames" not in manifest and manifest["num_clips"] == 3


def test_clip_key_and_loaded_clip(toy: ToyConverter) -> None:
    spec = toy.list_clips("train", clip_length=2)[1]
    assert spec.key == "toy_a_000012"
    clip = toy.load_clip(spec)
    assert clip.key == "toy_a_000012"
    assert clip.frames.shape == (2, HEIGHT, WIDTH, 3) and clip.frames.dtype == np.uint8
    assert clip.depth.shape == (2, HEIGHT, WIDTH) and clip.depth.dtype == np.float32
    assert clip.depth[1, 3, 3] == 14.0
    assert clip.meta == {
        "dataset": "toy",
        "scene": "a",
        "frame_ids": [12, 13],
        "stride": 1,
        "intrinsics": [100.0, 101.0, 4.0, 3.0],
        "depth_units": "m",
        "format_version": 1,
    }


def test_load_clip_refuses_mixed_sizes(toy: ToyConverter, monkeypatch) -> None:
    spec = toy.list_clips("train", clip_length=2)[0]
    original = toy.load_frame

    def uneven(spec: ClipSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
        rgb, depth = original(spec, index)
        return (rgb, depth) if index == 0 else (rgb[:-1], depth[:-1])

    monkeypatch.setattr(toy, "load_frame", uneven)
    with pytest.raises(ValueError, match=r"clip toy_a_000010 .* shapes"):
        toy.load_clip(spec)


def test_unknown_split_lists_known_splits(toy: ToyConverter) -> None:
    with pytest.raises(ValueError, match="toy has no split 'test'; known splits: train"):
        toy.list_clips("test", clip_length=2)


def test_missing_root_and_missing_subfolder_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="raw dataset folder not found") as error:
        ToyConverter(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(error.value)
    (tmp_path / "raw").mkdir()
    with pytest.raises(FileNotFoundError, match="'scenes' not found") as error:
        ToyConverter(tmp_path / "raw")
    assert str(tmp_path / "raw" / "scenes") in str(error.value)
    assert "ROOT/scenes/" in str(error.value)


def test_registry_holds_the_fourteen_converters_and_names_known_ones() -> None:
    names = set(convert_package.CONVERTERS)
    training = {"mvs_synth", "spring", "tartanair", "pointodyssey", "dynamic_replica"}
    evaluation = {"sintel", "eth3d", "waymo", "unrealstereo4k", "urbansyn"}
    video_depth_anything = {"kitti", "bonn", "scannet", "nyuv2"}
    assert names == training | evaluation | video_depth_anything
    for name in names:
        cls = get_converter(name)
        assert cls.name == name and cls.units and cls.layout and cls.splits
    with pytest.raises(ValueError, match="unknown converter 'davis'; known converters: ") as error:
        get_converter("davis")
    assert all(name in str(error.value) for name in names)


def test_register_refuses_a_second_class_with_the_same_name(monkeypatch) -> None:
    monkeypatch.setattr(base, "CONVERTERS", {})
    base.register(ToyConverter)
    assert base.get_converter("toy") is ToyConverter

    class OtherToy(ToyConverter):
        pass

    with pytest.raises(ValueError, match="converter name 'toy' is taken"):
        base.register(OtherToy)


def test_numbered_files_and_missing_depth_is_named(tmp_path: Path) -> None:
    for name in ("frame_2.png", "frame_10.png", "frame_1.png", "notes.txt"):
        (tmp_path / "rgb" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "rgb" / name).touch()
    rgb = numbered_files(tmp_path / "rgb", r"frame_(\d+)\.png")
    assert list(rgb) == [1, 2, 10]
    assert rgb[10] == tmp_path / "rgb" / "frame_10.png"
    depth = {1: Path("d1"), 2: Path("d2"), 10: Path("d10"), 11: Path("d11")}
    assert frames_with_depth(rgb, depth, "scene") == [1, 2, 10]
    with pytest.raises(FileNotFoundError, match=r"scene s: 1 RGB frame\(s\) have no depth.*\[2\]"):
        frames_with_depth(rgb, {1: Path("d1"), 10: Path("d10")}, "s")
    with pytest.raises(FileNotFoundError, match="expected folder"):
        numbered_files(tmp_path / "missing", r"(\d+)")


def test_scene_folders_evaluation_splits_and_paired_frame_files(toy: ToyConverter) -> None:
    root = toy.root
    for scene in ("b", "a", "c"):
        for frame in (3, 1, 2):
            for sub, name in (("rgb", f"{frame}.png"), ("depth", f"{frame}.npy")):
                (root / scene / sub).mkdir(parents=True, exist_ok=True)
                (root / scene / sub / name).touch()
    assert toy.scene_folders(root, "rgb", ("depth",)) == ["a", "b", "c"]
    frames = toy.frame_files("b", root / "b/rgb", r"(\d+)\.png", root / "b/depth", r"(\d+)\.npy")
    assert frames.frame_ids == [1, 2, 3]
    assert frames.items[1] == FrameFiles(root / "b/rgb/2.png", root / "b/depth/2.npy")
    names = [f"s{i}" for i in range(10)]
    assert toy.evaluation_scenes("train", names) == names
    (root / "c/depth").rename(root / "c/moved")
    with pytest.raises(FileNotFoundError, match="'depth' of scene 'c'") as error:
        toy.scene_folders(root, "rgb", ("depth",))
    assert str(root / "c" / "depth") in str(error.value) and "ROOT/scenes/" in str(error.value)
    with pytest.raises(FileNotFoundError, match=r"any scene folder not found at .*<scene>/video"):
        toy.scene_folders(root, "video")


def test_split_folders_are_required_and_named(tmp_path: Path) -> None:
    (tmp_path / "raw" / "scenes").mkdir(parents=True)
    toy = ToyConverter(tmp_path / "raw")
    with pytest.raises(FileNotFoundError, match=r"no split folder \(train/, \.\.\.\)"):
        toy.require_split_folders()
    with pytest.raises(FileNotFoundError, match="the 'train' split folder not found"):
        toy.split_folder("train")
    with pytest.raises(ValueError, match="toy has no split 'val'"):
        toy.split_folder("val")
    (tmp_path / "raw" / "train").mkdir()
    toy.require_split_folders()
    assert toy.split_folder("train") == tmp_path / "raw" / "train"
