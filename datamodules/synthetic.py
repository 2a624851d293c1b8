"""Procedural synthetic video clips with exact depth: the project's embedded default data.

No download, deterministic for a seed, fast on CPU. A random scene is a textured ground plane,
one to three walls (long thin boxes), boxes and spheres (most of them moving independently) under
a sky; a pinhole camera (horizontal field of view 55-75 degrees) translates and rotates along a
smooth path at 1.2-2.2 m height. Frames are ray-cast by :mod:`datamodules.raycast`: depth is
**z-depth in metres** (distance along the optical axis), ``+inf`` for sky, never NaN.

Each clip is dataset ``"synthetic"``, scene ``scene_{index:05d}``, with ``intrinsics``
``[fx, fy, cx, cy]`` (cx = (W - 1) / 2, cy = (H - 1) / 2), ``depth_type: "z"`` and
``cam_to_world`` (per frame a row-major 4x4 camera-to-world matrix, OpenCV camera axes, metres)
in its json. Clip ``index`` of seed ``s`` is drawn from ``np.random.default_rng((s, index))``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datamodules.format import Clip, make_key, make_meta
from datamodules.raycast import Box, Ground, Scene, Sphere, Texture, camera_rotation, render_frame
from datamodules.shard_writer import ClipShardWriter


def _random_texture(rng: np.random.Generator, checker_m: tuple[float, float]) -> Texture:
    colour_a = rng.uniform(0.2, 0.95, size=3)
    return Texture(
        colour_a=colour_a,
        colour_b=colour_a * rng.uniform(0.3, 0.7),
        checker_m=rng.uniform(*checker_m),
        noise_m=rng.uniform(0.05, 0.5),
        noise_amplitude=rng.uniform(0.1, 0.3),
        lattice=rng.uniform(-1.0, 1.0, size=(32, 32)),
    )


def _clearance_m(primitive: Box | Sphere, cameras: np.ndarray) -> float:
    """Smallest horizontal distance between the object and the camera (T, 3) over the frames."""
    frames = np.arange(len(cameras))[:, None]
    centres = primitive.centre + frames * primitive.velocity  # (T, 3)
    offsets = cameras[:, :2] - centres[:, :2]
    if isinstance(primitive, Sphere):
        return float((np.linalg.norm(offsets, axis=1) - primitive.radius).min())
    yaws = primitive.yaw + frames[:, 0] * primitive.yaw_rate
    c, s = np.cos(yaws), np.sin(yaws)
    local = np.stack([c * offsets[:, 0] + s * offsets[:, 1], c * offsets[:, 1] - s * offsets[:, 0]])
    outside = np.maximum(np.abs(local.T) - primitive.half_size[:2], 0.0)
    return float(np.linalg.norm(outside, axis=1).min())


def _place(
    rng: np.random.Generator, cameras: np.ndarray, headings: np.ndarray, kind: str
) -> Box | Sphere | None:
    """A wall, box or sphere in front of the camera at some frame, clear of the camera path."""
    for _ in range(20):
        frame = rng.integers(len(cameras))
        bearing = headings[frame] + rng.uniform(-0.7, 0.7)
        near, far = (10.0, 30.0) if kind == "wall" else (3.0, 15.0)
        ground_xy = cameras[frame, :2] + rng.uniform(near, far) * _forward(bearing)[:2]
        moving = kind != "wall" and rng.random() < 0.7
        velocity = np.zeros(3)
        if moving:
            velocity[:2] = rng.uniform(0.03, 0.12) * _forward(rng.uniform(-np.pi, np.pi))[:2]
        lift = rng.uniform(0.0, 1.5) if rng.random() < 0.3 else 0.0
        if kind == "sphere":
            radius = rng.uniform(0.3, 1.2)
            centre = np.array([*ground_xy, radius + lift])
            candidate = Sphere(_random_texture(rng, (0.1, 0.5)), centre, radius, velocity)
        else:
            if kind == "wall":
                half = np.array([rng.uniform(4.0, 15.0), 0.2, rng.uniform(1.5, 4.0)])
                lift = 0.0
            else:
                half = rng.uniform(0.3, 1.5, size=3)
            yaw_rate = rng.uniform(-0.05, 0.05) if moving else 0.0
            candidate = Box(
                _random_texture(rng, (0.3, 1.5) if kind == "wall" else (0.1, 0.6)),
                np.array([*ground_xy, half[2] + lift]),
                half,
                rng.uniform(-np.pi, np.pi),
                velocity,
                yaw_rate,
            )
        if _clearance_m(candidate, cameras) > 0.5:
            return candidate
    return None


def _forward(heading: float | np.ndarray) -> np.ndarray:
    """Horizontal unit vector(s) of a heading (0 = north, positive = left), shape (..., 3)."""
    heading = np.asarray(heading)
    return np.stack([-np.sin(heading), np.cos(heading), np.zeros_like(heading)], axis=-1)


def sample_scene(rng: np.random.Generator, frames: int) -> tuple[Scene, list[np.ndarray]]:
    """Draw a random scene and a smooth camera path.

    Returns:
        The scene and, per frame, the camera-to-world matrix (4, 4) in metres.
    """
    steps = np.arange(frames)
    heading = rng.uniform(-np.pi, np.pi) + rng.uniform(-0.03, 0.03) * steps
    phase = rng.uniform(0.0, 2 * np.pi, size=4)
    speed_m = rng.uniform(0.05, 0.25)
    cameras = np.cumsum(speed_m * _forward(heading), axis=0)
    cameras[:, 2] = rng.uniform(1.2, 2.2) + 0.03 * np.sin(0.5 * steps + phase[0])
    yaw = heading + 0.08 * np.sin(0.25 * steps + phase[1])
    pitch = rng.uniform(-0.2, 0.05) + 0.03 * np.sin(0.3 * steps + phase[2])
    roll = 0.03 * np.sin(0.2 * steps + phase[3])
    kinds = ["wall"] * rng.integers(1, 4) + ["box"] * rng.integers(2, 6)
    kinds += ["sphere"] * rng.integers(1, 5)
    placed = [_place(rng, cameras, heading, kind) for kind in kinds]
    elevation, azimuth = rng.uniform(0.4, 1.2), rng.uniform(-np.pi, np.pi)
    sun = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth)])
    scene = Scene(
        primitives=[Ground(_random_texture(rng, (0.5, 2.0)))] + [p for p in placed if p],
        sun=np.append(sun, np.sin(elevation)),
    )
    poses = []
    for t in steps:
        pose = np.eye(4)
        pose[:3, :3] = camera_rotation(yaw[t], pitch[t], roll[t])
        pose[:3, 3] = cameras[t]
        poses.append(pose)
    return scene, poses


def render_clip(
    seed: int | np.random.Generator, frames: int, height: int, width: int, index: int = 0
) -> Clip:
    """Render one random clip of dataset ``"synthetic"``, scene ``scene_{index:05d}``.

    Args:
        seed: Seed (the clip's generator is ``np.random.default_rng((seed, index))``) or a
            generator to draw from.
        frames: Number of frames T.
        height: Image height H in pixels.
        width: Image width W in pixels.
        index: Clip index, part of the scene name and of the seed.

    Returns:
        A clip with (T, H, W, 3) uint8 frames and (T, H, W) z-depth in metres (+inf sky).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng((seed, index))
    scene, poses = sample_scene(rng, frames)
    horizontal_fov = rng.uniform(np.radians(55.0), np.radians(75.0))
    focal = 0.5 * width / math.tan(0.5 * horizontal_fov)
    intrinsics = (focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)
    rendered = [
        render_frame(scene, pose[:3, 3], pose[:3, :3], intrinsics, height, width, frame)
        for frame, pose in enumerate(poses)
    ]
    name = f"scene_{index:05d}"
    meta = make_meta(
        "synthetic",
        name,
        list(range(frames)),
        stride=1,
        intrinsics=list(intrinsics),
        depth_type="z",
        cam_to_world=[pose.reshape(-1).round(6).tolist() for pose in poses],
    )
    return Clip(
        key=make_key("synthetic", name, 0),
        meta=meta,
        frames=np.stack([rgb for rgb, _ in rendered]),
        depth=np.stack([depth for _, depth in rendered]),
    )


def write_synthetic_shards(
    out_dir: str | Path,
    num_clips: int,
    frames: int,
    height: int,
    width: int,
    seed: int,
    clips_per_shard: int = 16,
    split: str = "train",
    first_index: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> list[str]:
    """Render clips ``first_index`` .. ``first_index + num_clips - 1`` into shards.

    Shards are ``{out_dir}/synthetic-{split}-%06d.tar`` with ``clips_per_shard`` clips each.

    Returns:
        The shard paths in order.

    Raises:
        ValueError: If a size or count is out of range.
        FileExistsError: If ``out_dir`` already holds shards of this split and ``overwrite`` is
            False (they are deleted first when it is True).
    """
    sizes = {"num_clips": num_clips, "frames": frames, "clips_per_shard": clips_per_shard}
    for name, value in {**sizes, "height": height, "width": width}.items():
        least = 8 if name in ("height", "width") else 1
        if value < least:
            raise ValueError(f"{name} must be >= {least}, got {value}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    existing = sorted(out.glob(f"synthetic-{split}-*.tar"))
    if existing and not overwrite:
        raise FileExistsError(
            f"{out} already holds {len(existing)} synthetic {split!r} shards ({existing[0].name} "
            "...); choose another folder or pass overwrite=True (--overwrite) to replace them"
        )
    for path in existing:
        path.unlink()
    shards: list[str] = []
    pattern = str(out / f"synthetic-{split}-%06d.tar")
    with ClipShardWriter(pattern, clips_per_shard, post=shards.append) as writer:
        indices = range(first_index, first_index + num_clips)
        for index in tqdm(indices, desc=f"synthetic {split}", unit="clip", disable=not progress):
            writer.write(render_clip(seed, frames, height, width, index))
    return shards


def default_cache_dir() -> Path:
    """``$FLASHDEPTH_CACHE/synthetic-v1``, else ``~/.cache/flashdepth/synthetic-v1``."""
    root = os.environ.get("FLASHDEPTH_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "flashdepth") / "synthetic-v1"


def ensure_synthetic_dataset(
    cache_dir: str | Path | None = None,
    train_clips: int = 48,
    val_clips: int = 8,
    test_clips: int = 8,
    frames: int = 16,
    height: int = 126,
    width: int = 224,
    seed: int = 0,
    clips_per_shard: int = 16,
    progress: bool = False,
) -> dict[str, str]:
    """Create the synthetic train/val/test shard sets once and return their brace patterns.

    The sets live in ``cache_dir`` (default :func:`default_cache_dir`) in a folder named after
    the configuration. They are rendered into a temporary folder that is renamed when complete
    (its ``manifest.json`` written last), so an interrupted run never leaves a set that looks
    complete, and processes racing to create it (e.g. DDP ranks) agree on one copy. Splits use
    disjoint clip indices (train first), hence distinct scenes.

    Returns:
        ``{"train": pattern, "val": pattern, "test": pattern}`` for the splits with clips.
    """
    counts = {"train": train_clips, "val": val_clips, "test": test_clips}
    config = {"frames": frames, "height": height, "width": width, "seed": seed}
    config |= {"clips_per_shard": clips_per_shard, "clips": counts, "generator": "v1"}
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{height}x{width}-t{frames}-n{train_clips}-{val_clips}-{test_clips}-s{seed}"
    target = target.with_name(f"{target.name}-k{clips_per_shard}")
    if _read_manifest(target, config) is None:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=root))
        staging.chmod(0o755)  # mkdtemp makes it private; the finished set is a shared cache
        try:
            shards, first = {}, 0
            for split, count in counts.items():
                if count > 0:
                    paths = write_synthetic_shards(
                        staging, count, frames, height, width, seed, clips_per_shard, split,
                        first_index=first, progress=progress,
                    )  # fmt: skip
                    shards[split] = [Path(p).name for p in paths]
                first += count
            manifest = {"config": config, "shards": shards}
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
            _promote(staging, target, config)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    shards = _read_manifest(target, config)
    return {
        split: brace_pattern([str(target / n) for n in names]) for split, names in shards.items()
    }


def _promote(staging: Path, target: Path, config: dict) -> None:
    """Rename a finished staging folder to ``target`` unless another process got there first."""
    if target.exists():
        if _read_manifest(target, config) is not None:
            return
        shutil.rmtree(target)  # an incomplete set from an interrupted run
    try:
        staging.rename(target)
    except OSError:
        if _read_manifest(target, config) is None:
            raise


def _read_manifest(folder: Path, config: dict) -> dict[str, list[str]] | None:
    """Shard names per split if ``folder`` holds a complete set made with ``config``."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    shards = manifest.get("shards", {})
    complete = all((folder / name).is_file() for names in shards.values() for name in names)
    return shards if manifest.get("config") == config and complete else None


def brace_pattern(paths: list[str]) -> str:
    """One brace pattern for consecutive shards ``PREFIX-NNNNNN.tar``, e.g. from one writer.

    ``[".../synthetic-train-000000.tar", ".../synthetic-train-000002.tar"]`` gives
    ``".../synthetic-train-{000000..000002}.tar"``; a single path is returned as it is.
    """
    if len(paths) == 1:
        return str(paths[0])
    prefix = str(paths[0])[: -len("000000.tar")]
    return f"{prefix}{{{str(paths[0])[-10:-4]}..{str(paths[-1])[-10:-4]}}}.tar"
