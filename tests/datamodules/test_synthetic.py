"""Tests of the synthetic clip generator, its shards and the cached default dataset."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import webdataset

import datamodules.synthetic as synthetic
from datamodules.format import decode_clip
from datamodules.raycast import GROUND_EXTENT_M, Box, Sphere, render_frame
from datamodules.shards import expand_shards
from datamodules.synthetic import (
    brace_pattern,
    ensure_synthetic_dataset,
    render_clip,
    sample_scene,
    write_synthetic_shards,
)

FRAMES, HEIGHT, WIDTH = 4, 42, 70


def test_render_clip_has_the_clip_layout_and_metadata() -> None:
    clip = render_clip(3, FRAMES, HEIGHT, WIDTH, index=12)
    assert clip.key == "synthetic_scene_00012_000000"
    assert clip.frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and clip.frames.dtype == np.uint8
    assert clip.depth.shape == (FRAMES, HEIGHT, WIDTH) and clip.depth.dtype == np.float32
    meta = clip.meta
    assert (meta["dataset"], meta["scene"], meta["depth_units"]) == (
        "synthetic",
        "scene_00012",
        "m",
    )
    assert meta["frame_ids"] == list(range(FRAMES)) and meta["stride"] == 1
    fx, fy, cx, cy = meta["intrinsics"]
    assert fx == fy and (cx, cy) == ((WIDTH - 1) / 2, (HEIGHT - 1) / 2)
    assert math.radians(55) <= 2 * math.atan(WIDTH / 2 / fx) <= math.radians(75)
    assert len(meta["cam_to_world"]) == FRAMES and len(meta["cam_to_world"][0]) == 16
    assert not np.isnan(clip.depth).any()
    assert clip.depth[np.isfinite(clip.depth)].min() > 0


def test_same_seed_gives_identical_clips_and_other_seeds_differ() -> None:
    first = render_clip(7, FRAMES, HEIGHT, WIDTH, index=1)
    again = render_clip(7, FRAMES, HEIGHT, WIDTH, index=1)
    np.testing.assert_array_equal(first.frames, again.frames)
    np.testing.assert_array_equal(first.depth, again.depth)
    assert first.meta == again.meta
    for other in (
        render_clip(8, FRAMES, HEIGHT, WIDTH, 1),
        render_clip(7, FRAMES, HEIGHT, WIDTH, 2),
    ):
        assert not np.array_equal(first.depth, other.depth)
        assert not np.array_equal(first.frames, other.frames)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sky_is_where_rays_leave_the_scene_above_the_horizon(seed: int) -> None:
    clip = render_clip(seed, FRAMES, HEIGHT, WIDTH)
    fx, fy, cx, cy = clip.meta["intrinsics"]
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    rays = np.stack([(cols - cx) / fx, (rows - cy) / fy, np.ones_like(cols, float)], -1)
    for t, pose in enumerate(clip.meta["cam_to_world"]):
        cam_to_world = np.array(pose).reshape(4, 4)
        world = rays @ cam_to_world[:3, :3].T
        elevation = world[..., 2] / np.linalg.norm(world, axis=-1)
        sky = np.isposinf(clip.depth[t])
        assert sky.any() and (elevation > 0).any()
        # sky only above the horizon, or just below it past the ground's 400 m radius
        camera_height_m = cam_to_world[2, 3]
        assert (elevation[sky] > -camera_height_m / GROUND_EXTENT_M).all()
        # the ground fills the view where rays descend steeply enough, except objects
        steep = elevation < -camera_height_m / 50.0
        assert np.isfinite(clip.depth[t][steep]).all()


def test_objects_move_independently_of_the_camera() -> None:
    scene, poses = sample_scene(np.random.default_rng(5), 8)
    moving = [p for p in scene.primitives if isinstance(p, Box | Sphere) and p.velocity.any()]
    assert moving
    intrinsics = (60.0, 60.0, (WIDTH - 1) / 2, (HEIGHT - 1) / 2)
    fixed_camera = poses[0][:3, 3], poses[0][:3, :3]
    changed = 0
    for frame in range(1, 8):
        _, first = render_frame(scene, *fixed_camera, intrinsics, HEIGHT, WIDTH, 0)
        _, later = render_frame(scene, *fixed_camera, intrinsics, HEIGHT, WIDTH, frame)
        changed += int(np.any(first != later))
    assert changed > 0
    frozen = dataclasses.replace(scene, primitives=[p for p in scene.primitives if p not in moving])
    _, first = render_frame(frozen, *fixed_camera, intrinsics, HEIGHT, WIDTH, 0)
    _, later = render_frame(frozen, *fixed_camera, intrinsics, HEIGHT, WIDTH, 7)
    np.testing.assert_array_equal(first, later)


def test_camera_path_keeps_clear_of_objects() -> None:
    for seed in range(5):
        scene, poses = sample_scene(np.random.default_rng(seed), 16)
        cameras = np.stack([pose[:3, 3] for pose in poses])
        for primitive in scene.primitives[1:]:
            assert synthetic._clearance_m(primitive, cameras) > 0.5


def test_write_synthetic_shards_round_trips_render_clip(tmp_path: Path) -> None:
    shards = write_synthetic_shards(tmp_path, 3, 2, HEIGHT, WIDTH, seed=4, clips_per_shard=2)
    assert [Path(s).name for s in shards] == [
        "synthetic-train-000000.tar",
        "synthetic-train-000001.tar",
    ]
    assert brace_pattern(shards) == str(tmp_path / "synthetic-train-{000000..000001}.tar")
    samples = webdataset.WebDataset(brace_pattern(shards), shardshuffle=False)
    clips = [decode_clip(sample) for sample in samples]
    assert [c.meta["scene"] for c in clips] == ["scene_00000", "scene_00001", "scene_00002"]
    expected = render_clip(4, 2, HEIGHT, WIDTH, index=2)
    np.testing.assert_array_equal(
        clips[2].depth, expected.depth.astype(np.float16).astype(np.float32)
    )

    with pytest.raises(FileExistsError, match="overwrite"):
        write_synthetic_shards(tmp_path, 1, 2, HEIGHT, WIDTH, seed=4)
    again = write_synthetic_shards(tmp_path, 1, 2, HEIGHT, WIDTH, seed=4, overwrite=True)
    assert sorted(tmp_path.glob("*.tar")) == [Path(again[0])]
    with pytest.raises(ValueError, match="height"):
        write_synthetic_shards(tmp_path / "other", 1, 2, 4, WIDTH, seed=4)


SMALL = {"train_clips": 2, "val_clips": 1, "test_clips": 1, "frames": 2, "height": 28, "width": 42}


def test_ensure_synthetic_dataset_creates_once_with_disjoint_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLASHDEPTH_CACHE", str(tmp_path))
    patterns = ensure_synthetic_dataset(**SMALL, clips_per_shard=1)
    assert sorted(patterns) == ["test", "train", "val"]
    assert patterns["train"].startswith(str(tmp_path / "synthetic-v1"))
    scenes = {}
    for split, pattern in patterns.items():
        samples = webdataset.WebDataset(expand_shards(pattern), shardshuffle=False)
        scenes[split] = [decode_clip(sample).meta["scene"] for sample in samples]
    assert scenes == {
        "train": ["scene_00000", "scene_00001"],
        "val": ["scene_00002"],
        "test": ["scene_00003"],
    }
    monkeypatch.setattr(synthetic, "render_clip", _fail)  # a complete set is never re-rendered
    assert ensure_synthetic_dataset(**SMALL, clips_per_shard=1) == patterns


def test_ensure_synthetic_dataset_rebuilds_incomplete_and_survives_interruption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patterns = ensure_synthetic_dataset(tmp_path, **SMALL)
    Path(patterns["val"]).unlink()  # a damaged set
    rendered = []
    original = synthetic.render_clip

    def counting(*args, **kwargs):
        rendered.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_clip", counting)
    assert ensure_synthetic_dataset(tmp_path, **SMALL) == patterns
    assert len(rendered) == 4 and Path(patterns["val"]).is_file()

    monkeypatch.setattr(synthetic, "render_clip", _fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        ensure_synthetic_dataset(tmp_path, **{**SMALL, "seed": 9})
    assert sorted(p.name for p in tmp_path.iterdir()) == [Path(patterns["val"]).parent.name]


def _fail(*args, **kwargs):
    raise RuntimeError("interrupted")
