"""The project as a user installs it: a wheel (not editable) in a fresh virtual environment.

The wheel is built offline from a copy of the sources (so the build leaves no ``build/`` or
``*.egg-info`` in the repository), installed with ``--no-deps`` into a virtual environment
that reuses the installed dependencies (``--system-site-packages``), and used from a folder
outside the repository: the packaged weights registry must resolve a name there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: What setuptools reads to build the wheel: the project file, its readme and the packages.
SOURCES = ("pyproject.toml", "README.md", "flashdepth", "datamodules")
#: Run inside the installed environment; prints what the test checks as JSON.
PROBE = """
import json
from importlib.resources import files

import flashdepth
from flashdepth.checkpoints import registry, resolve_weights

print(json.dumps({
    "package": flashdepth.__file__,
    "registry_file": str(files("flashdepth").joinpath("weights_registry.json")),
    "names": sorted(registry()),
    "resolved": str(resolve_weights("depth-anything-v2-vits")),
}))
"""
ORIGIN = "import importlib.util; print(importlib.util.find_spec('flashdepth').origin)"


def _run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_wheel_install_resolves_a_registry_name(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "FLASHDEPTH_WEIGHTS": str(tmp_path / "weights"),
        "FLASHDEPTH_CACHE": str(tmp_path / "cache"),
    }
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    installed_before = _run([sys.executable, "-c", ORIGIN], outside, env)

    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    pip_wheel = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels]
    _run([sys.executable, "-m", "pip", *pip_wheel, source], tmp_path, env)
    (wheel,) = wheels.glob("flashdepth-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "flashdepth/weights_registry.json" in archive.namelist()

    venv = tmp_path / "venv"  # its python runs the suite's pip from the system site-packages
    venv_args = ["venv", "--system-site-packages", "--without-pip", venv]
    _run([sys.executable, "-m", *venv_args], tmp_path, env)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], tmp_path, env)

    (tmp_path / "weights").mkdir()
    placed = tmp_path / "weights" / "depth_anything_v2_vits.pth"
    placed.write_bytes(b"resolve_weights only looks for the file")
    probe = json.loads(_run([python, "-c", PROBE], outside, env))
    site = Path(probe["package"]).parent.parent
    assert site.is_relative_to(venv) and not site.is_relative_to(REPO)
    assert Path(probe["registry_file"]) == site / "flashdepth" / "weights_registry.json"
    assert probe["names"] == [
        "depth-anything-v2-vitb",
        "depth-anything-v2-vitl",
        "depth-anything-v2-vits",
        "flashdepth-full",
        "flashdepth-l",
        "flashdepth-s",
    ]
    assert probe["resolved"] == str(placed)
    # the environment running the suite still imports flashdepth from where it did
    assert _run([sys.executable, "-c", ORIGIN], outside, env) == installed_before
