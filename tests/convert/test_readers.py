"""Tests of the raw file readers: values, dtypes, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from datamodules.convert import readers
from datamodules.convert.readers import (
    read_exr,
    read_float16_png,
    read_hdf5,
    read_npy,
    read_png16,
    read_rgb,
)


def test_read_exr_single_and_named_channels(tmp_path: Path, write_exr) -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    values[0, 0] = np.inf
    path = write_exr(tmp_path / "d.exr", values, channel="Y")
    out = read_exr(path)
    assert out.dtype == np.float32 and out.shape == (3, 4)
    np.testing.assert_array_equal(out, values)
    rgb = np.stack([values, values + 1, values + 2], axis=-1).astype(np.float16)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    OpenEXR.File(header, {"RGB": rgb}).write(str(tmp_path / "rgb.exr"))
    np.testing.assert_array_equal(read_exr(tmp_path / "rgb.exr"), values)  # R by default
    np.testing.assert_array_equal(read_exr(tmp_path / "rgb.exr", "G"), values + 1)
    with pytest.raises(ValueError, match=r"rgb.exr has no channel Z; it has \['B', 'G', 'R'\]"):
        read_exr(tmp_path / "rgb.exr", "Z")


def test_read_exr_errors_name_the_file(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(FileNotFoundError, match="missing.exr does not exist"):
        read_exr(tmp_path / "missing.exr")
    (tmp_path / "broken.exr").write_bytes(b"not an exr")
    with pytest.raises(ValueError, match="cannot read .*broken.exr as EXR"):
        read_exr(tmp_path / "broken.exr")

    def no_module(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(readers.importlib, "import_module", no_module)
    with pytest.raises(ImportError, match=r"pip install 'flashdepth\[convert\]'"):
        read_exr(tmp_path / "broken.exr")


def test_read_png16_keeps_all_bits_and_refuses_8_bit(tmp_path: Path, write_png16) -> None:
    values = np.array([[0, 1, 255, 256], [4095, 32768, 65534, 65535]], dtype=np.uint16)
    out = read_png16(write_png16(tmp_path / "d.png", values))
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, values)
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(
        ValueError, match=r"rgb.png is not a 16-bit single-channel PNG \(PIL mode RGB"
    ):
        read_png16(tmp_path / "rgb.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "d.png").read_bytes()[:20])
    with pytest.raises(ValueError, match="cannot decode .*cut.png as PNG"):
        read_png16(tmp_path / "cut.png")


def test_read_float16_png_reinterprets_bits(tmp_path: Path, write_float16_png) -> None:
    depth = np.array([[1.5, 0.25, 1000.0], [np.inf, np.nan, 0.0]], dtype=np.float32)
    out = read_float16_png(write_float16_png(tmp_path / "d.png", depth))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0], [1.5, 0.25, 1000.0])
    assert np.isposinf(out[1, 0]) and np.isnan(out[1, 1]) and out[1, 2] == 0.0


def test_read_rgb_converts_grey_and_names_broken_files(tmp_path: Path) -> None:
    Image.fromarray(np.full((3, 5), 77, dtype=np.uint8)).save(tmp_path / "grey.png")
    out = read_rgb(tmp_path / "grey.png")
    assert out.shape == (3, 5, 3) and out.dtype == np.uint8 and (out == 77).all()
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match="cannot decode .*bad.jpg as an image"):
        read_rgb(tmp_path / "bad.jpg")


def test_read_npy_and_hdf5(tmp_path: Path, write_npy, write_hdf5) -> None:
    values = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(read_npy(write_npy(tmp_path / "d.npy", values)), values)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="cannot read .*objects.npy as a .npy array"):
        read_npy(tmp_path / "objects.npy")
    path = write_hdf5(tmp_path / "d.dsp5", "disparity", values)
    np.testing.assert_array_equal(read_hdf5(path, "disparity"), values)
    with pytest.raises(ValueError, match=r"d.dsp5 has no dataset 'depth'; it has \['disparity'\]"):
        read_hdf5(path, "depth")
    with pytest.raises(ValueError, match="cannot read .*d.npy as HDF5"):
        read_hdf5(tmp_path / "d.npy", "disparity")
