"""Tiny evaluation data with known values for the ``flashdepth evaluate`` tests.

:func:`known_depth` makes a depth video in metres with sky (+inf) in the top rows, an invalid
(NaN) corner and a step edge; :func:`write_shards` stores videos as evaluation shards (one
sample per video, black RGB: scoring reads depth only); :func:`write_frames` writes a
prediction video as per-frame files in any format of ``flashdepth evaluate``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenEXR
from PIL import Image

from datamodules.format import Clip, make_key, make_meta
from datamodules.shard_writer import ClipShardWriter

#: Size of the known videos: (frames, height, width).
SHAPE = (5, 12, 16)


def known_depth(seed: int = 0, shape: tuple[int, int, int] = SHAPE, sky: bool = True) -> np.ndarray:
    """(T, H, W) float32 depth in metres: a slanted floor 2-20 m, a box at 1.5 m, NaN corner.

    With ``sky``, the top two rows are +inf.
    """
    frames, height, width = shape
    rng = np.random.default_rng(seed)
    rows = np.linspace(20.0, 2.0, height, dtype=np.float32)[:, None]
    depth = np.repeat(np.broadcast_to(rows, (height, width))[None], frames, axis=0).copy()
    depth *= rng.uniform(0.9, 1.1, size=(frames, height, width)).astype(np.float32)
    for t in range(frames):
        depth[t, height // 2 :, 2 + t : 6 + t] = 1.5  # a box moving right
    if sky:
        depth[:, :2] = np.inf
    depth[:, -2:, :2] = np.nan
    return depth


def write_shards(folder: Path, videos: list[tuple[str, str, np.ndarray, list[int]]]) -> str:
    """Store ``(dataset, scene, depth (T, H, W) m, frame ids)`` videos as shards in ``folder``.

    Returns:
        The folder, as a ``--gt`` pattern.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with ClipShardWriter(str(folder / "eval-%06d.tar"), max_clips_per_shard=2) as writer:
        for dataset, scene, depth, frame_ids in videos:
            rgb = np.zeros((*depth.shape, 3), np.uint8)
            key = make_key(dataset, scene, frame_ids[0])
            writer.write(Clip(key, make_meta(dataset, scene, frame_ids), rgb, depth))
    return str(folder)


def _write_exr(path: Path, values: np.ndarray) -> None:
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"Z": np.ascontiguousarray(values, np.float32)}).write(str(path))


def write_frames(
    folder: Path,
    values: np.ndarray,
    file_format: str,
    numbers: list[int] | None = None,
    png16_scale: float = 100.0,
    name: str = "{number:06d}",
) -> list[Path]:
    """Write (T, h, w) values as one file per frame.

    Args:
        folder: The video folder (created).
        values: Depth or inverse depth per frame.
        file_format: ``"exr"``, ``"npy"``, ``"npz"`` or ``"png16"`` (value * scale, rounded).
        numbers: Number of each frame in its file name (default 0, 1, ...).
        png16_scale: PNG value = round(value * scale).
        name: File name stem pattern.

    Returns:
        The files written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    numbers = list(range(len(values))) if numbers is None else numbers
    extension = {"exr": ".exr", "npy": ".npy", "npz": ".npz", "png16": ".png"}[file_format]
    paths = []
    for number, frame in zip(numbers, values, strict=True):
        path = folder / (name.format(number=number) + extension)
        if file_format == "exr":
            _write_exr(path, frame)
        elif file_format == "npy":
            np.save(path, frame.astype(np.float32))
        elif file_format == "npz":
            np.savez_compressed(path, prediction=frame.astype(np.float32))
        else:
            steps = np.clip(np.round(frame * png16_scale), 0, 65535).astype(np.uint16)
            Image.fromarray(steps).save(path)
        paths.append(path)
    return paths
