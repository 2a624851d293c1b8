"""Tests of ``flashdepth data``: synth, inspect, convert --list, benchmark dispatch, errors."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import webdataset

from datamodules.cli import main
from datamodules.format import decode_clip

SMALL = ["--frames", "2", "--height", "28", "--width", "42"]


def synth(out: Path, *extra: str) -> int:
    return main(["synth", "--out", str(out), "--num-clips", "3", *SMALL, *extra])


def test_synth_writes_shards_and_prints_their_pattern(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert synth(tmp_path, "--clips-per-shard", "2", "--seed", "5", "--split", "val") == 0
    pattern = str(tmp_path / "synthetic-val-{000000..000001}.tar")
    assert pattern in capsys.readouterr().out
    clips = [decode_clip(s) for s in webdataset.WebDataset(pattern, shardshuffle=False)]
    assert [c.frames.shape for c in clips] == [(2, 28, 42, 3)] * 3


def test_synth_refuses_to_overwrite_without_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert synth(tmp_path) == 0
    assert synth(tmp_path) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert synth(tmp_path, "--overwrite") == 0


def test_inspect_prints_counts_and_flags_decode_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    synth(tmp_path)
    capsys.readouterr()
    shard = str(tmp_path / "synthetic-train-000000.tar")
    assert main(["inspect", shard]) == 0
    out = capsys.readouterr().out
    assert "clips: 3   frames: 6" in out and "synthetic" in out and "28x42: 3" in out
    assert main(["inspect", str(tmp_path)]) == 0  # a folder: every *.tar inside
    assert "shards: 1   clips: 3   frames: 6" in capsys.readouterr().out

    broken = tmp_path / "broken.tar"
    broken.write_bytes(Path(shard).read_bytes()[:3000])
    assert main(["inspect", shard, str(broken)]) == 1
    assert "broken.tar" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synth", "--out", "OUT"], "--num-clips"),
        (["synth", "--out", "OUT", "--num-clips", "two"], "invalid int value"),
        (["synth", "--out", "OUT", "--num-clips", "1", "--height", "3"], "height"),
        (["inspect", "OUT/none-{000000..000001}.tar"], "does not match existing shard files"),
        (["convert", "spring", "--out", "OUT"], "--root"),
        (["convert", "no_such_dataset", "--root", "OUT", "--out", "OUT"], "known converters"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_user_errors_exit_2_with_a_message_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [arg.replace("OUT", str(tmp_path)) for arg in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_convert_list_shows_each_converter_with_its_units(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from datamodules.convert import CONVERTERS

    assert main(["convert", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(CONVERTERS) > 0
    for line, (name, converter) in zip(lines, sorted(CONVERTERS.items()), strict=True):
        assert line.startswith(name) and converter.units in line


def test_benchmark_passes_its_arguments_on(monkeypatch: pytest.MonkeyPatch) -> None:
    received = []
    fake = types.ModuleType("datamodules.benchmark")
    fake.main = lambda argv: received.append(argv) or 0
    monkeypatch.setitem(sys.modules, "datamodules.benchmark", fake)
    assert main(["benchmark", "--height", "70", "--clips", "2"]) == 0
    assert received == [["--height", "70", "--clips", "2"]]


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "synth" in capsys.readouterr().out
    assert main(["inspect", "--help"]) == 0
    assert "sky" in capsys.readouterr().out


def test_convert_options_reach_the_converter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}

    class Recorder:
        name = "sintel"
        splits = ("test",)

        def __init__(self, root: str, render_pass: str = "clean") -> None:
            seen["render_pass"] = render_pass
            raise FileNotFoundError(f"{root}: stop here")

    monkeypatch.setattr("datamodules.convert.get_converter", lambda name: Recorder)
    args = ["convert", "sintel", "--root", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*args, "--option", "render_pass=final"]) == 2
    assert seen == {"render_pass": "final"}
    assert main([*args, "--option", "colour=blue"]) == 2
    assert "sintel accepts render_pass=VALUE" in capsys.readouterr().err
