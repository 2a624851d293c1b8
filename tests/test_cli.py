"""The ``flashdepth`` command line in-process: dispatch, help, run folders, fit, test, predict.

The quickstart's fit is checked for its step-0 validation, summary and progress bar. The runs
use the quickstart recipe with tiny data and the tiny test encoder (``vitt``): these tests are
about the command line, not the architecture.
"""

from __future__ import annotations

import io
import json
import math
import random
import shlex
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import flashdepth
from datamodules.video import IncompleteVideoWarning
from flashdepth.callbacks import StepProgressBar
from flashdepth.checkpoints import CheckpointError
from flashdepth.cli import EXIT_FAILED, FlashDepthCLI, build_cli, main
from flashdepth.run_report import FitSummary
from flashdepth.task import FlashDepthTask
from tests.cli_overrides import tiny_data, tiny_model, tiny_trainer
from tests.inference.media import truncate, write_video

QUICKSTART = str(Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml")
METRICS = ["delta1", "abs_rel", "boundary_f1", "flicker"]


@dataclass
class Run:
    """A finished ``flashdepth fit``: its command line, CLI, run folder and printed output."""

    args: list[str]
    cli: FlashDepthCLI
    root: Path
    printed: str


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def quickstart(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Three steps (two epochs) of the quickstart recipe with its callbacks, tiny data and model.

    Validated before training and at step 2.
    """
    root = tmp_path_factory.mktemp("quickstart")
    args = ["fit", "-c", QUICKSTART, *tiny_data(cache), *tiny_model()]
    args += tiny_trainer(root, recipe_callbacks=True)
    args += ["--trainer.max_steps=3", "--trainer.val_check_interval=2"]
    with redirect_stdout(io.StringIO()) as printed:
        cli = build_cli(args)
    return Run(args, cli, root, printed.getvalue())


@pytest.fixture(scope="module")
def checkpoint(quickstart: Run) -> Path:
    """``last.ckpt`` of the quickstart run, in its run folder."""
    return quickstart.root / "checkpoints" / "last.ckpt"


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"flashdepth {flashdepth.__version__}"


def test_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["-h"])
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "data", "benchmark"):
        assert command in out


@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
def test_help_starts_with_our_usage_examples_and_options(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "-h"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        f"usage: flashdepth {command} -c RECIPE.yaml [-c OVERLAY.yaml ...] "
        "[--ckpt_path last|FILE] [--KEY VALUE ...]"
    )
    trainer_flags = next(i for i, line in enumerate(lines) if "--trainer.accelerator" in line)
    top = lines[:trainer_flags]
    assert trainer_flags < 45  # Lightning's own help: some 50 lines of usage first
    for option in ("-c, --config FILE", "--ckpt_path last | FILE", "--debug", "--print_config"):
        assert any(line.lstrip().startswith(option) for line in top), option
    # the examples on top parse (each `flashdepth ...` line with its continuation lines)
    text = "\n".join(top).replace("\\\n", " ")
    examples = [line.split("#")[0].split() for line in text.splitlines()]
    examples = [words[1:] for words in examples if words[:2] == ["flashdepth", command]]
    assert examples
    for example in examples:
        with pytest.raises(SystemExit) as exit_info:
            main([*example, "--print_config"])
        assert exit_info.value.code == 0, example
    capsys.readouterr()


@pytest.mark.parametrize(("command", "usage"), [("data", "flashdepth data"), ("benchmark", "")])
def test_data_and_benchmark_are_dispatched(command: str, usage: str, capsys) -> None:
    try:
        status = main([command, "--help"])
    except SystemExit as exit_info:  # argparse's --help exits
        status = exit_info.code
    assert status in (0, None)
    out = capsys.readouterr().out
    assert f"flashdepth {command}" in out and usage in out
    assert "fit" not in out.split("\n")[0]


def test_quickstart_fast_dev_run(cache: Path, tmp_path: Path) -> None:
    args = ["fit", "-c", QUICKSTART, *tiny_data(cache), *tiny_model(), *tiny_trainer(tmp_path)]
    cli = build_cli(args + ["--trainer.fast_dev_run=1"])
    assert cli.trainer.global_step == 1
    assert isinstance(cli.model, FlashDepthTask)
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))


def test_checkpoint_rebuilds_the_task_from_its_hyperparameters(checkpoint: Path) -> None:
    task = FlashDepthTask.load_from_checkpoint(checkpoint, map_location="cpu")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["global_step"] == 3  # the end of the run, past the last validation (step 2)
    for name, value in task.state_dict().items():
        assert torch.equal(value, state["state_dict"][name]), name
    assert task.hparams.lr_vit == 5e-5  # the quickstart's, restored from the checkpoint


def test_test_from_checkpoint_reports_every_metric(checkpoint, cache, tmp_path) -> None:
    args = ["test", "-c", QUICKSTART, *tiny_data(cache), *tiny_model(), *tiny_trainer(tmp_path)]
    cli = build_cli(args + [f"--ckpt_path={checkpoint}"])
    metrics = cli.trainer.callback_metrics
    for key in ("abs_rel", "delta1", "boundary_f1", "flicker"):
        assert math.isfinite(float(metrics[f"test/synthetic/{key}"]))
    assert 0.0 <= float(metrics["test/delta1"]) <= 1.0
    # a fixed log folder per command in the run folder: no lightning_logs/version_N
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["test"]
    assert not list(tmp_path.rglob("version_*")) and not list(tmp_path.rglob("lightning_logs"))


def test_fit_writes_its_run_folder_and_logs_the_untrained_model_at_step_0(quickstart) -> None:
    checkpoints = sorted(p.name for p in (quickstart.root / "checkpoints").iterdir())
    assert checkpoints == ["best-step=2.ckpt", "last.ckpt"]
    assert [p.name for p in (quickstart.root / "logs").iterdir()] == ["fit"]
    logged = {}
    for events in sorted((quickstart.root / "logs" / "fit").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if "val/delta1" in accumulator.Tags()["scalars"]:
            logged.update({e.step: e.value for e in accumulator.Scalars("val/delta1")})
    summary = next(c for c in quickstart.cli.trainer.callbacks if isinstance(c, FitSummary))
    assert [step for step, _ in summary.history] == [0, 2]
    assert logged[0] == pytest.approx(summary.history[0][1]["delta1"], abs=1e-6)
    assert 0.0 <= logged[0] <= 1.0


def test_fit_ends_with_metrics_checkpoints_and_next_commands(quickstart) -> None:
    report = quickstart.printed.split("flashdepth fit: step 3 of 3 done\n", 1)[1].splitlines()
    assert report[0].split() == ["validation", "step", *METRICS]
    summary = next(c for c in quickstart.cli.trainer.callbacks if isinstance(c, FitSummary))
    untrained = summary.history[0][1]
    final = quickstart.cli.trainer.callback_metrics  # the last validation, as Lightning keeps it
    expected_rows = [
        ["untrained", "0", *(f"{untrained[m]:.4f}" for m in METRICS)],
        ["best", "(delta1)", "2", *(f"{float(final[f'val/{m}']):.4f}" for m in METRICS)],
        ["final", "2", *(f"{float(final[f'val/{m}']):.4f}" for m in METRICS)],
    ]
    assert [line.split() for line in report[1:4]] == expected_rows

    best = quickstart.root / "checkpoints" / "best-step=2.ckpt"
    assert report[4:7] == [
        "checkpoints",
        f"  best  {best}",
        f"  last  {quickstart.root / 'checkpoints' / 'last.ckpt'}",
    ]
    assert report[7] == "next"
    test_command = shlex.split(report[8])
    assert test_command == ["flashdepth", "test", *quickstart.args[1:], "--ckpt_path", str(best)]
    # the tiny test encoder is no preset: the report says so and gives predict instead of stream
    assert report[9].startswith("  # no preset has this architecture (closest: ")
    assert report[9].endswith(": flashdepth stream cannot build it; predict rebuilds it")
    assert shlex.split(report[10]) == [
        "flashdepth", "predict", *quickstart.args[1:], "--ckpt_path", str(best),
        "--data", "datamodules.video.VideoDataModule", "--data.path", "VIDEO",
        "--trainer.callbacks+=flashdepth.inference.PredictionWriter",
        "--trainer.callbacks.output_dir", "depth/", "--return_predictions", "false",
    ]  # fmt: skip
    # the checkpoint holds FlashDepth's plain layout: the preset at this size loads it strictly
    model = flashdepth.create_model("flashdepth-s", weights=str(best), encoder="vitt")
    stored = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, stored[f"model.{name}"]), name


def test_the_progress_bar_counts_the_runs_steps(quickstart) -> None:
    (bar,) = [c for c in quickstart.cli.trainer.callbacks if isinstance(c, StepProgressBar)]
    (task,) = [t for t in bar.progress.tasks if t.id == bar.train_progress_bar_id]
    assert (task.completed, task.total) == (3, 3)  # Lightning's bar: 1 of 2 (epoch 1's batches)
    assert task.description == "Train · epoch 1"  # Lightning's: "Epoch 1/-2"
    assert bar.total_train_batches == 3 and bar.is_step_limited()


def test_test_without_weights_is_refused(cache: Path, tmp_path: Path) -> None:
    args = ["test", "-c", QUICKSTART, *tiny_data(cache), *tiny_model(), *tiny_trainer(tmp_path)]
    with pytest.raises(RuntimeError, match="random weights.*--ckpt_path"):
        build_cli(args)


def test_predict_from_checkpoint_writes_depth_per_frame(checkpoint, cache, tmp_path) -> None:
    out = tmp_path / "depth"
    args = ["predict", "-c", QUICKSTART, *tiny_data(cache), *tiny_model()]
    args += tiny_trainer(tmp_path)
    writer = "--trainer.callbacks+=flashdepth.inference.PredictionWriter"
    build_cli(args + [writer, f"--trainer.callbacks.output_dir={out}", f"--ckpt_path={checkpoint}"])
    units = [json.loads(path.read_text()) for path in sorted(out.glob("synthetic/*/units.json"))]
    assert [u["video"]["frames"] for u in units] == [4, 4]  # the two test videos, 4 frames each
    assert units[0]["formats"]["npy"]["dtype"] == "float32"
    assert "100 / depth_in_metres" in units[0]["scale"]
    frames = sorted(out.glob("synthetic/*/npy/*.npy"))
    assert len(frames) == 2 * 4
    depth = np.load(frames[0])
    assert depth.dtype == np.float32 and depth.shape == (42, 56)
    assert np.isfinite(depth).all() and (depth >= 0).all()


@pytest.mark.parametrize(("encoder", "width"), [("vitt", 32), ("vits", 64)])
def test_temporal_width_follows_the_encoder(encoder: str, width: int) -> None:
    """One temporal overlay serves every encoder: the model calls the factory with its width."""
    gru = str(Path(QUICKSTART).parent / "ablations" / "temporal_gru.yaml")
    encoder_arg = f"--model.init_args.model.init_args.encoder={encoder}"
    cli = build_cli(["-c", QUICKSTART, "-c", gru, encoder_arg], run=False)
    model = cli.model.model
    assert type(model.temporal).__name__ == "GRUTemporal"
    assert model.temporal.dim == model.features == width


def test_predict_on_a_cut_short_video_warns_and_fails(checkpoint, tmp_path, capsys) -> None:
    whole = write_video(tmp_path / "whole.mp4", frames=24)
    cut = truncate(whole, tmp_path / "cut.mp4", 0.5)
    out = tmp_path / "depth"
    args = ["predict", "-c", QUICKSTART, *tiny_model(), *tiny_trainer(tmp_path)]
    args += [f"--ckpt_path={checkpoint}"]
    args += ["--data=datamodules.video.VideoDataModule", f"--data.path={cut}"]
    args += ["--data.short_side=28", "--data.chunk_frames=4", "--return_predictions=false"]
    args += ["--trainer.callbacks+=flashdepth.inference.PredictionWriter"]
    args += [f"--trainer.callbacks.output_dir={out}"]
    with pytest.warns(IncompleteVideoWarning, match=r"cut\.mp4 ended after \d+ of the 24 frames"):
        assert main(args) == EXIT_FAILED
    error = capsys.readouterr().err
    decoded = int(error.split("cut.mp4 ended after ", 1)[1].split()[0])
    assert 0 < decoded < 24
    assert "of the 24 frames its header states (truncated or damaged file)" in error
    assert len(list(out.rglob("*.npy"))) == decoded  # the frames it had are written


def test_a_ckpt_path_that_is_not_a_checkpoint_is_named(cache: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(random.Random(0).randbytes(4096))
    args = ["test", "-c", QUICKSTART, *tiny_data(cache), *tiny_model(), *tiny_trainer(tmp_path)]
    with pytest.raises(
        CheckpointError, match=r"garbage\.ckpt is not a PyTorch checkpoint \("
    ) as caught:
        build_cli(args + [f"--ckpt_path={garbage}"])
    assert "weights_only=False" not in str(caught.value)
