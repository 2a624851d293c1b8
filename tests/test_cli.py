"""The ``flashdepth`` command line in-process: dispatch, quickstart fit, test and predict."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

import flashdepth
from flashdepth.checkpoints import CheckpointError
from flashdepth.cli import build_cli, main
from flashdepth.task import FlashDepthTask
from tests.cli_overrides import tiny_data, tiny_trainer

QUICKSTART = str(Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="module")
def checkpoint(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of a two-step quickstart run (tiny data)."""
    root = tmp_path_factory.mktemp("quickstart")
    args = ["fit", "-c", QUICKSTART, *tiny_data(cache), *tiny_trainer(root)]
    callback = "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint"
    build_cli(args + ["--trainer.max_steps=2", "--trainer.val_check_interval=2", callback])
    (found,) = root.rglob("checkpoints/*.ckpt")
    return found


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
    args = ["fit", "-c", QUICKSTART, *tiny_data(cache), *tiny_trainer(tmp_path)]
    cli = build_cli(args + ["--trainer.fast_dev_run=1"])
    assert cli.trainer.global_step == 1
    assert isinstance(cli.model, FlashDepthTask)
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))


def test_checkpoint_rebuilds_the_task_from_its_hyperparameters(checkpoint: Path) -> None:
    task = FlashDepthTask.load_from_checkpoint(checkpoint, map_location="cpu")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["global_step"] == 2
    for name, value in task.state_dict().items():
        assert torch.equal(value, state["state_dict"][name]), name
    assert task.hparams.lr_vit == 5e-5  # the quickstart's, restored from the checkpoint


def test_test_from_checkpoint_reports_every_metric(checkpoint, cache, tmp_path) -> None:
    args = ["test", "-c", QUICKSTART, *tiny_data(cache), *tiny_trainer(tmp_path)]
    cli = build_cli(args + [f"--ckpt_path={checkpoint}"])
    metrics = cli.trainer.callback_metrics
    for key in ("abs_rel", "delta1", "boundary_f1", "flicker"):
        assert math.isfinite(float(metrics[f"test/synthetic/{key}"]))
    assert 0.0 <= float(metrics["test/delta1"]) <= 1.0


def test_test_without_weights_is_refused(cache: Path, tmp_path: Path) -> None:
    args = ["test", "-c", QUICKSTART, *tiny_data(cache), *tiny_trainer(tmp_path)]
    with pytest.raises(RuntimeError, match="random weights.*--ckpt_path"):
        build_cli(args)


def test_predict_from_checkpoint_writes_depth_per_frame(checkpoint, cache, tmp_path) -> None:
    out = tmp_path / "depth"
    args = ["predict", "-c", QUICKSTART, *tiny_data(cache), *tiny_trainer(tmp_path)]
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


@pytest.mark.parametrize(("encoder", "width"), [("vits", 64), ("vitb", 128)])
def test_temporal_width_follows_the_encoder(encoder: str, width: int) -> None:
    """One temporal overlay serves every encoder: the model calls the factory with its width."""
    gru = str(Path(QUICKSTART).parent / "ablations" / "temporal_gru.yaml")
    encoder_arg = f"--model.init_args.model.init_args.encoder={encoder}"
    cli = build_cli(["-c", QUICKSTART, "-c", gru, encoder_arg], run=False)
    model = cli.model.model
    assert type(model.temporal).__name__ == "GRUTemporal"
    assert model.temporal.dim == model.features == width


def test_a_ckpt_path_that_is_not_a_checkpoint_is_named(cache: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(random.Random(0).randbytes(4096))
    args = ["test", "-c", QUICKSTART, *tiny_data(cache), *tiny_trainer(tmp_path)]
    with pytest.raises(
        CheckpointError, match=r"garbage\.ckpt is not a PyTorch checkpoint \("
    ) as caught:
        build_cli(args + [f"--ckpt_path={garbage}"])
    assert "weights_only=False" not in str(caught.value)
