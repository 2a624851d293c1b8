"""Readers for the raw dataset file formats: EXR, 16-bit PNG, float16-in-PNG, RGB, npy, HDF5.

Every reader takes a path, returns a numpy array with a stated dtype and raises an error that
names the file: ``FileNotFoundError`` when it does not exist, ``ValueError`` when it cannot be
decoded or does not hold what the reader expects. The readers never change units: converting raw
values to metres is the job of each converter.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

EXR_DEPTH_CHANNELS = ("Z", "Y", "R")
"""Channels tried in order by :func:`read_exr` when a multi-channel file is read without a name."""


def _existing(path: str | Path) -> Path:
    """Return ``path`` as a Path, raising a FileNotFoundError naming it when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"raw file {path} does not exist (or is not a file)")
    return path


def _import_optional(module: str, purpose: str) -> Any:
    """Import an optional dependency of ``flashdepth[convert]`` (OpenEXR, h5py)."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the {module} package: pip install 'flashdepth[convert]'"
        ) from error


def read_exr(path: str | Path, channel: str | None = None) -> np.ndarray:
    """Read one channel of the first part of an EXR file.

    Args:
        path: EXR file.
        channel: Channel name (e.g. ``"Z"``, ``"R"``). ``None`` takes the only channel of a
            single-channel file, else the first of ``Z``, ``Y``, ``R`` the file has (depth
            renderers write one of these).

    Returns:
        (H, W) float32 array of the stored values (half and float channels alike).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable EXR or lacks the channel; the message lists the
            channels it has.
    """
    path = _existing(path)
    openexr = _import_optional("OpenEXR", "reading EXR files")
    try:
        with openexr.File(str(path), separate_channels=True) as exr:
            channels = {name: value.pixels for name, value in exr.channels().items()}
    except Exception as error:
        raise ValueError(
            f"cannot read {path} as EXR ({error}); the file may be truncated: re-download it"
        ) from error
    if channel is None:
        if len(channels) == 1:
            channel = next(iter(channels))
        else:
            channel = next((name for name in EXR_DEPTH_CHANNELS if name in channels), None)
    if channel not in channels:
        wanted = channel if channel is not None else " or ".join(EXR_DEPTH_CHANNELS)
        raise ValueError(
            f"EXR file {path} has no channel {wanted}; it has {sorted(channels)}: "
            "pass the channel name to read_exr"
        )
    return np.asarray(channels[channel], dtype=np.float32)


def read_png16(path: str | Path) -> np.ndarray:
    """Read a single-channel 16-bit PNG without losing bits.

    Args:
        path: PNG file holding one 16-bit grey channel.

    Returns:
        (H, W) uint16 array of the stored values.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be decoded or is not a 16-bit grey image.
    """
    path = _existing(path)
    try:
        with Image.open(path) as image:
            mode = image.mode
            values = np.array(image)
    except Exception as error:
        raise ValueError(
            f"cannot decode {path} as PNG ({error}); the file may be truncated: re-download it"
        ) from error
    if mode not in ("I;16", "I;16B", "I;16L", "I") or values.ndim != 2:
        raise ValueError(
            f"{path} is not a 16-bit single-channel PNG (PIL mode {mode}, shape {values.shape}); "
            "check that this is the depth file of the dataset"
        )
    if values.dtype != np.uint16 and (values.min() < 0 or values.max() > np.iinfo(np.uint16).max):
        raise ValueError(f"{path} holds values outside the 16-bit range: not a 16-bit PNG")
    return values.astype(np.uint16)


def read_float16_png(path: str | Path) -> np.ndarray:
    """Read a PNG whose 16-bit values are the bit patterns of float16 numbers.

    Dynamic Replica stores depth this way: the float16 depth array is viewed as uint16 and saved
    as a 16-bit grey PNG. Reading it back reinterprets the bits, it does not scale them.

    Args:
        path: 16-bit grey PNG holding float16 bits.

    Returns:
        (H, W) float32 array of the float16 values (inf and NaN patterns survive as inf and NaN).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a 16-bit single-channel PNG.
    """
    bits = read_png16(path)
    return bits.view(np.float16).astype(np.float32)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file (JPEG, PNG, ...) as 8-bit RGB.

    Args:
        path: Image file; grey, palette and RGBA images are converted to RGB.

    Returns:
        (H, W, 3) uint8 array.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be decoded as an image.
    """
    path = _existing(path)
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except Exception as error:
        raise ValueError(
            f"cannot decode {path} as an image ({error}); the file may be truncated: re-download it"
        ) from error


def read_npy(path: str | Path) -> np.ndarray:
    """Read a ``.npy`` array (pickled objects are refused).

    Args:
        path: ``.npy`` file.

    Returns:
        The stored array, dtype unchanged.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable npy array.
    """
    path = _existing(path)
    try:
        return np.load(path, allow_pickle=False)
    except Exception as error:
        raise ValueError(
            f"cannot read {path} as a .npy array ({error}); the file may be truncated: "
            "re-download it"
        ) from error


def read_hdf5(path: str | Path, key: str) -> np.ndarray:
    """Read one dataset of an HDF5 file (e.g. Spring's ``.dsp5`` disparity, key ``disparity``).

    Args:
        path: HDF5 file.
        key: Name of the dataset inside the file.

    Returns:
        The stored array, dtype unchanged.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not readable HDF5 or has no dataset ``key``; the message lists the
            keys it has.
    """
    path = _existing(path)
    h5py = _import_optional("h5py", "reading HDF5 files")
    try:
        with h5py.File(path, "r") as file:
            if key not in file:
                raise ValueError(
                    f"HDF5 file {path} has no dataset {key!r}; it has {sorted(file.keys())}"
                )
            return np.asarray(file[key][()])
    except OSError as error:
        raise ValueError(
            f"cannot read {path} as HDF5 ({error}); the file may be truncated: re-download it"
        ) from error


def numbered_files(folder: Path, pattern: str) -> dict[int, Path]:
    r"""Files of ``folder`` whose name fully matches ``pattern``, by frame number.

    Args:
        folder: Folder to list (not recursive).
        pattern: Regular expression whose first group is the frame number, e.g.
            ``r"frame_left_(\d+)\.png"``.

    Returns:
        ``{frame number: path}`` sorted by frame number.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"expected folder {folder} does not exist")
    regex = re.compile(pattern)
    found = {}
    for path in folder.iterdir():
        match = regex.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def frames_with_depth(rgb: dict[int, Path], depth: dict[int, Path], scene: str) -> list[int]:
    """Frame numbers of a scene, checking that every RGB frame has its depth file.

    Raises:
        FileNotFoundError: Some RGB frames have no depth; names the first missing ones.
    """
    missing = sorted(set(rgb) - set(depth))
    if missing:
        raise FileNotFoundError(
            f"scene {scene}: {len(missing)} RGB frame(s) have no depth file (frames "
            f"{missing[:5]}, e.g. for {rgb[missing[0]]}); the download is incomplete: "
            "re-download or unpack the depth archive of this scene"
        )
    return sorted(rgb)
