"""Fixtures for the converter tests: fake raw files in each dataset's format, a shard reader.

Writers produce fake raw files in the datasets' formats; a reader reads the produced shards.

Every writer fixture returns a function that creates parent folders and returns the path it
wrote, so a test builds a tiny raw dataset in its real layout in a few lines.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import OpenEXR
import pytest
from PIL import Image

from datamodules.format import Clip, decode_clip


def _parent(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _write_exr(path: str | Path, values: np.ndarray, channel: str = "Y") -> Path:
    """Write (H, W) values as one float32 EXR channel."""
    path = _parent(path)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    channels = {channel: np.ascontiguousarray(values, dtype=np.float32)}
    OpenEXR.File(header, channels).write(str(path))
    return path


def _write_png16(path: str | Path, values: np.ndarray) -> Path:
    """Write (H, W) uint16 values as a 16-bit grey PNG."""
    path = _parent(path)
    Image.fromarray(np.ascontiguousarray(values, dtype=np.uint16)).save(path)
    return path


def _write_float16_png(path: str | Path, depth_m: np.ndarray) -> Path:
    """Write (H, W) depth as float16 bits in a 16-bit PNG (Dynamic Replica's encoding)."""
    bits = np.asarray(depth_m, dtype=np.float16).view(np.uint16)
    return _write_png16(path, bits)


def _write_rgb(path: str | Path, rgb: np.ndarray) -> Path:
    """Write (H, W, 3) uint8 RGB; the format follows the suffix (PNG lossless, JPEG lossy)."""
    path = _parent(path)
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(path, quality=100)
    return path


def _write_npy(path: str | Path, values: np.ndarray) -> Path:
    path = _parent(path)
    np.save(path, values)
    return path


def _write_hdf5(path: str | Path, key: str, values: np.ndarray) -> Path:
    path = _parent(path)
    with h5py.File(path, "w") as file:
        file.create_dataset(key, data=values)
    return path


def _write_json(path: str | Path, value: object) -> Path:
    path = _parent(path)
    path.write_text(json.dumps(value))
    return path


def _make_rgb(height: int, width: int, seed: int) -> np.ndarray:
    """A deterministic smooth (H, W, 3) uint8 image (survives JPEG with small errors)."""
    rows, cols = np.mgrid[0:height, 0:width]
    channels = [(rows * 7 + cols * 5 + seed * 40) % 256, (cols * 9 + seed * 13) % 256]
    channels.append(np.full((height, width), (seed * 57) % 256))
    return np.stack(channels, axis=-1).astype(np.uint8)


def _read_clips(out_dir: str | Path, pattern: str = "*.tar") -> list[Clip]:
    """Decode every clip of the shards matching ``pattern`` in ``out_dir``, in shard order."""
    clips = []
    for shard in sorted(Path(out_dir).glob(pattern)):
        samples: dict[str, dict] = {}
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, field = member.name.split(".", 1)
                sample = samples.setdefault(key, {"__key__": key, "__url__": str(shard)})
                sample[field] = tar.extractfile(member).read()
        clips.extend(decode_clip(sample) for sample in samples.values())
    return clips


@pytest.fixture
def write_exr() -> Callable[..., Path]:
    """``write_exr(path, values, channel="Y")``: one float32 EXR channel."""
    return _write_exr


@pytest.fixture
def write_png16() -> Callable[..., Path]:
    """``write_png16(path, uint16 values)``: 16-bit grey PNG."""
    return _write_png16


@pytest.fixture
def write_float16_png() -> Callable[..., Path]:
    """``write_float16_png(path, depth)``: float16 bits in a 16-bit PNG."""
    return _write_float16_png


@pytest.fixture
def write_rgb() -> Callable[..., Path]:
    """``write_rgb(path, rgb)``: PNG or JPEG by suffix."""
    return _write_rgb


@pytest.fixture
def write_npy() -> Callable[..., Path]:
    """``write_npy(path, values)``: a ``.npy`` array."""
    return _write_npy


@pytest.fixture
def write_hdf5() -> Callable[..., Path]:
    """``write_hdf5(path, key, values)``: one HDF5 dataset (Spring's ``.dsp5``)."""
    return _write_hdf5


@pytest.fixture
def write_json() -> Callable[..., Path]:
    """``write_json(path, value)``: a JSON file."""
    return _write_json


@pytest.fixture
def make_rgb() -> Callable[..., np.ndarray]:
    """``make_rgb(height, width, seed)``: deterministic (H, W, 3) uint8 image."""
    return _make_rgb


@pytest.fixture
def read_clips() -> Callable[..., list[Clip]]:
    """``read_clips(out_dir, pattern="*.tar")``: decoded clips of the shards, in order."""
    return _read_clips
