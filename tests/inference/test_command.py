"""Tests of ``flashdepth stream`` (``flashdepth.inference.command.main``), run in-process.

Videos are tiny H.264 mp4s written here (48x64, 30000/1001 fps); the model is FlashDepth without
temporal module at the tiny test size (``tiny_presets``) and a 28 px network input. Usage errors
must be found before the model is loaded: those tests make ``create_model`` fail if it is
called.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import OpenEXR
import pytest
import torch
from torch import nn

from flashdepth.inference.command import collect_inputs, main, parse_fps, parse_resolution
from flashdepth.inference.predictor import StreamingPredictor
from flashdepth.models import registry
from tests.cli_overrides import tiny_preset
from tests.inference.media import NTSC, ramp_frame, write_png, write_video

SMALL = ["--model", "flashdepth-s-none", "--resolution", "28", "--no-progress"]


#: Every preset is built at the tiny test size (``flashdepth.create_model`` is patched).
pytestmark = pytest.mark.usefixtures("tiny_presets")


@pytest.fixture(scope="module")
def built() -> nn.Module:
    return tiny_preset("flashdepth-s-none")


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the usage error was found")

    monkeypatch.setattr(registry, "create_model", refuse)  # what flashdepth.create_model reads


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "beach.mp4", frames=3)
    write_video(folder / "city.mp4", frames=2, size=(40, 56))
    (folder / "notes.txt").write_text("not a video: the folder expands to its videos only")
    return folder


def test_a_folder_of_videos_is_streamed_then_skipped_on_rerun(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "depth"
    command = [str(videos), "--out", str(out), "--formats", "exr,mp4", *SMALL]

    assert main(command) == 0

    for name, frames, (height, width) in (("beach", 3, (48, 64)), ("city", 2, (40, 56))):
        exrs = sorted((out / name / "exr").glob("*.exr"))
        assert [p.name for p in exrs] == [f"{i:06d}.exr" for i in range(frames)]
        with OpenEXR.File(str(exrs[-1]), separate_channels=True) as exr:
            depth = exr.channels()["Z"].pixels
        assert depth.shape == (height, width) and depth.dtype == np.float32
        with av.open(str(out / name / f"{name}_depth.mp4")) as container:
            stream = container.streams.video[0]
            decoded = list(container.decode(stream))
            assert (stream.average_rate, len(decoded)) == (NTSC, frames)
            assert (decoded[0].height, decoded[0].width) == (height, width)
        assert json.loads((out / name / "units.json").read_text())["video"]["frames"] == frames
    captured = capsys.readouterr()
    assert "RANDOM weights" in captured.err
    assert "2 done, 0 skipped, 0 failed; 5 frames in" in captured.out
    report = json.loads((out / "stream_report.json").read_text())
    assert report["model"] == "flashdepth-s-none" and report["weights"] is None
    assert [
        (i["name"], i["status"], i["frames"], i["expected_frames"]) for i in report["inputs"]
    ] == [
        ("beach", "done", 3, 3),
        ("city", "done", 2, 2),
    ]
    assert all(i["seconds"] > 0 and i["reason"] is None for i in report["inputs"])
    assert report["totals"]["frames"] == 5 and report["totals"]["exit_code"] == 0

    assert main(command) == 0

    captured = capsys.readouterr()
    assert captured.err.count("skipped (done)") == 2
    assert "0 done, 2 skipped, 0 failed; 0 frames in" in captured.out
    report = json.loads((out / "stream_report.json").read_text())
    assert [i["status"] for i in report["inputs"]] == ["skipped", "skipped"]


def test_a_broken_video_fails_alone_and_the_exit_status_is_1(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = videos / "broken.mp4"  # sorted between beach and city
    broken.write_bytes(np.random.default_rng(0).bytes(3000))
    out = tmp_path / "depth"

    assert main([str(videos), "--out", str(out), "--formats", "npy", *SMALL]) == 1

    report = json.loads((out / "stream_report.json").read_text())
    statuses = [(i["name"] or Path(i["input"]).stem, i["status"]) for i in report["inputs"]]
    assert statuses == [("beach", "done"), ("broken", "failed"), ("city", "done")]
    reason = report["inputs"][1]["reason"]
    assert str(broken) in reason and "not a readable video" in reason
    assert report["totals"]["failed"] == 1 and report["totals"]["frames"] == 5
    assert "2 done, 0 skipped, 1 failed" in capsys.readouterr().out
    assert not (out / "broken").exists()


def test_ctrl_c_mid_video_leaves_no_final_name_and_a_rerun_completes_it(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "depth"
    command = [str(videos), "--out", str(out), "--formats", "exr,mp4", *SMALL]
    predict = StreamingPredictor.predict
    calls = []

    def predict_then_ctrl_c(self, rgb: np.ndarray) -> np.ndarray:
        calls.append(rgb.shape)
        if len(calls) == 5:  # beach has 3 frames: the 2nd frame of city
            raise KeyboardInterrupt
        return predict(self, rgb)

    monkeypatch.setattr(StreamingPredictor, "predict", predict_then_ctrl_c)

    assert main(command) == 130

    captured = capsys.readouterr()
    assert "To resume, run the same command again" in captured.err
    assert f"flashdepth stream {videos} --out {out}" in captured.err.replace("\n", "")
    assert (out / "beach" / "units.json").is_file()
    assert (out / "city" / "exr" / "000000.exr").is_file()
    assert not (out / "city" / "units.json").exists()
    assert not (out / "city" / "city_depth.mp4").exists()
    report = json.loads((out / "stream_report.json").read_text())
    assert [(i["status"], i["frames"]) for i in report["inputs"]] == [
        ("done", 3),
        ("interrupted", 1),
    ]
    assert report["totals"]["interrupted"] == 1 and report["totals"]["exit_code"] == 130

    monkeypatch.setattr(StreamingPredictor, "predict", predict)
    assert main(command) == 0

    report = json.loads((out / "stream_report.json").read_text())
    assert [(i["status"], i["frames"]) for i in report["inputs"]] == [("skipped", 0), ("done", 2)]
    assert (out / "city" / "city_depth.mp4").is_file() and (out / "city" / "units.json").is_file()
    assert len(list((out / "city" / "exr").glob("*.exr"))) == 2


def test_a_missing_input_is_a_usage_error_naming_it(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_model: None
) -> None:
    absent = tmp_path / "holiday.mp4"
    assert main([str(videos), str(absent), "--out", str(tmp_path / "depth"), *SMALL]) == 2
    assert f"input {absent} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "depth").exists()


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_model_loads(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_model: None
) -> None:
    # Tests run as root, who may write anywhere: a folder below a regular file cannot exist.
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "depth"
    assert main([str(videos), "--out", str(out), *SMALL]) == 2
    assert f"output folder {out} is not writable" in capsys.readouterr().err


def test_two_inputs_with_one_output_name_are_refused(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture, no_model: None
) -> None:
    (tmp_path / "other").mkdir()
    other = write_video(tmp_path / "other" / "beach.mov", frames=1)
    out = tmp_path / "depth"
    assert main([str(videos), str(other), "--out", str(out), *SMALL]) == 2
    error = capsys.readouterr().err.replace("\n", "")
    assert f"inputs {videos / 'beach.mp4'} and {other} would both write to {out / 'beach'}" in error


def test_weights_that_do_not_fit_exit_2_with_the_loaders_message(
    videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture, built: nn.Module
) -> None:
    state = dict(built.state_dict())
    state["head.extra.weight"] = state.pop("temporal_out.1.weight")
    torch.save(state, tmp_path / "wrong.pth")
    command = [
        str(videos),
        "--out",
        str(tmp_path / "depth"),
        "--weights",
        str(tmp_path / "wrong.pth"),
    ]
    assert main([*command, *SMALL]) == 2
    error = capsys.readouterr().err
    assert "does not fit the model" in error
    assert "temporal_out.1.weight" in error and "head.extra.weight" in error
    assert not list((tmp_path / "depth").iterdir())


def test_inputs_expand_from_folders_globs_and_a_list_file(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.mov"):
        (tmp_path / name).write_bytes(b"")
    for shot in ("sh010", "sh020"):
        (tmp_path / "shots" / shot).mkdir(parents=True)
        for number in (1, 2):
            write_png(tmp_path / "shots" / shot / f"{shot}.{number:04d}.png", ramp_frame(number))
    listed = tmp_path / "lists" / "inputs.txt"
    listed.parent.mkdir()
    listed.write_text("# my shots\n../b.mp4\n\nrtsp://camera.local/live\n")

    inputs = collect_inputs([str(tmp_path), str(tmp_path / "*.m*")], listed)

    assert inputs == [
        str(tmp_path / "a.mov"),
        str(tmp_path / "b.mp4"),
        "rtsp://camera.local/live",
    ]
    shots = collect_inputs([str(tmp_path / "shots")], None)
    assert shots == [str(tmp_path / "shots" / "sh010"), str(tmp_path / "shots" / "sh020")]
    pattern = str(tmp_path / "shots" / "sh010" / "*.png")
    assert collect_inputs([pattern, str(tmp_path / "shots/sh010")], None) == [
        pattern,
        str(tmp_path / "shots" / "sh010"),
    ]


def test_resolution_and_fps_are_parsed_exactly() -> None:
    assert parse_resolution("518") == 518
    assert parse_resolution("518x924") == (518, 924)
    assert parse_resolution("input") is None
    assert parse_fps("29.97") == Fraction(30000, 1001)
    assert parse_fps("23.976") == Fraction(24000, 1001)
    assert parse_fps("30000/1001") == Fraction(30000, 1001)
    assert parse_fps("25") == 25 and parse_fps("24.5") == Fraction(49, 2)
    assert main(["clip.mp4", "--out", "x", "--resolution", "1080p"]) == 2
    assert main(["clip.mp4", "--out", "x", "--fps", "-3"]) == 2
