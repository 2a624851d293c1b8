"""The end-of-fit report: which preset ``flashdepth stream`` should build, and the commands.

Models are built on the meta device: only tensor names and shapes matter here. The report of a
real run (metrics, checkpoints, commands) is checked through the command line in
``tests/test_cli.py``.
"""

from __future__ import annotations

import shlex

import torch
from torch import nn

from flashdepth import create_model
from flashdepth.models.flashdepth import FlashDepth
from flashdepth.run_report import PresetMatch, matching_preset, next_commands, without_ckpt_path
from flashdepth.temporal import GRUTemporal

OPTIONS = ["-c", "recipes/quickstart.yaml", "--trainer.max_steps=10"]


def test_every_preset_matches_itself_exactly() -> None:
    for name in ("flashdepth-s", "flashdepth-s-gru", "flashdepth-l", "flashdepth-full"):
        with torch.device("meta"):
            model = create_model(name)
        assert matching_preset(model) == PresetMatch(name, name, 0, True)


def test_a_preset_class_with_other_arguments_gets_predict_and_its_closest_preset() -> None:
    with torch.device("meta"):
        model = FlashDepth(encoder="vits", stage=2, temporal=GRUTemporal)  # GRU after path_2
    match = matching_preset(model)
    assert match.exact is None and match.same_class
    assert match.closest == "flashdepth-s-gru"  # the same tensors: only the stage differs
    assert match.differing == 2  # ":stage" 2 here and 1 in the preset
    commands = next_commands(OPTIONS, model, "runs/x/checkpoints/last.ckpt")
    assert commands[0] == (
        "flashdepth test -c recipes/quickstart.yaml --trainer.max_steps=10 "
        "--ckpt_path runs/x/checkpoints/last.ckpt"
    )
    assert commands[1] == (
        "# no preset has this architecture (closest: flashdepth-s-gru, 2 tensors or settings "
        "differ): flashdepth stream cannot build it; predict rebuilds it"
    )
    assert shlex.split(commands[2]) == [
        "flashdepth", "predict", *OPTIONS, "--ckpt_path", "runs/x/checkpoints/last.ckpt",
        "--data", "datamodules.video.VideoDataModule", "--data.path", "VIDEO",
        "--trainer.callbacks+=flashdepth.inference.PredictionWriter",
        "--trainer.callbacks.output_dir", "depth/", "--return_predictions", "false",
    ]  # fmt: skip


def test_a_custom_model_is_said_to_be_no_preset() -> None:
    commands = next_commands(OPTIONS, nn.Linear(3, 3), "w.ckpt")
    assert commands[1].startswith("# Linear is not a preset model (custom class_path)")
    assert commands[2].startswith("flashdepth predict -c recipes/quickstart.yaml")


def test_an_exact_preset_gets_the_stream_command_with_quoted_weights() -> None:
    with torch.device("meta"):
        model = create_model("flashdepth-s")
    commands = next_commands(OPTIONS, model, "runs/my run/best-step=4.ckpt")
    assert commands[1] == (
        "flashdepth stream VIDEO --model flashdepth-s "
        "--weights 'runs/my run/best-step=4.ckpt' --out depth/"
    )


def test_resume_and_next_commands_drop_the_ckpt_path_in_both_spellings() -> None:
    argv = ["fit", "-c", "r.yaml", "--ckpt_path", "a.ckpt", "--ckpt_path=last", "--x=1"]
    assert without_ckpt_path(argv) == ["fit", "-c", "r.yaml", "--x=1"]
