"""Ctrl-C during ``flashdepth fit`` and ``--ckpt_path last``: the run continues where it stopped.

The quickstart recipe runs as the README gives it, from a working folder, with tiny data and the
tiny test encoder: its run folder is ``runs/quickstart``. Ctrl-C is a real SIGINT sent to the
test process during step 2, the last step of the first epoch (the training stream is seeded by
epoch, so the data position is exact there); the run saves at the end of that epoch and stops as
Lightning stops on Ctrl-C. The resumed run is the command the interrupted one printed; it must
end at the step, weights and learning rates of an uninterrupted run.
"""

from __future__ import annotations

import os
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from flashdepth.callbacks import save_atomically
from flashdepth.cli import EXIT_INTERRUPTED, main
from flashdepth.task import FlashDepthTask
from tests.cli_overrides import tiny_data, tiny_model

QUICKSTART = str(Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml")
LAST = Path("runs/quickstart/checkpoints/last.ckpt")


@pytest.fixture
def sigint_handler() -> Iterator[None]:
    """Lightning ignores SIGINT after a KeyboardInterrupt; give pytest its handler back."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def ctrl_c_in_step_2(task: FlashDepthTask, batch: dict, batch_idx: int) -> None:
    """Ctrl-C (SIGINT to this process) as the second step starts."""
    if task.trainer.global_step == 1:
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_saves_last_and_the_printed_command_resumes_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd, sigint_handler
) -> None:
    args = ["fit", "-c", QUICKSTART, *tiny_data(tmp_path / "cache"), *tiny_model()]
    args += ["--trainer.max_steps=4", "--trainer.val_check_interval=2"]
    args += ["--trainer.enable_model_summary=false"]
    args += ["--model.warmup_steps=3"]
    for folder in ("straight", "interrupted"):
        (tmp_path / folder).mkdir()

    monkeypatch.chdir(tmp_path / "straight")
    assert main(args) == 0
    straight = torch.load(LAST, map_location="cpu", weights_only=True)

    monkeypatch.chdir(tmp_path / "interrupted")
    with monkeypatch.context() as patch:
        patch.setattr(FlashDepthTask, "on_train_batch_start", ctrl_c_in_step_2)
        assert main(args) == EXIT_INTERRUPTED
    captured = capfd.readouterr()
    printed = captured.out
    assert "Ctrl-C: saving last.ckpt after this step" in captured.err
    # step 2 finished, then its validation and the epoch; the state is saved under the final
    # name only (no temporary file is left)
    assert sorted(p.name for p in LAST.parent.iterdir()) == ["best-step=2.ckpt", "last.ckpt"]
    assert torch.load(LAST, map_location="cpu", weights_only=True)["global_step"] == 2
    assert f"Interrupted at step 2: saved {LAST}" in printed  # relative to the working folder
    command = printed.split("Resume with:\n", 1)[1].splitlines()[0].strip()
    assert command == shlex.join(["flashdepth", *args, "--ckpt_path", "last"])

    assert main(shlex.split(command)[1:]) == 0
    resumed = torch.load(LAST, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == straight["global_step"] == 4
    for name, value in resumed["state_dict"].items():
        expected = straight["state_dict"][name]
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)
    straight_lr = [g["lr"] for g in straight["optimizer_states"][0]["param_groups"]]
    assert [g["lr"] for g in resumed["optimizer_states"][0]["param_groups"]] == straight_lr
    # warm-up over: the quickstart's ViT learning rate (LinearLR multiplies factors: 1 ulp)
    assert straight_lr[0] == pytest.approx(5e-5, rel=1e-12)


def test_a_save_that_fails_leaves_the_previous_last_checkpoint(tmp_path: Path) -> None:
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"step 1")

    def dies_midway(path: Path, weights_only: bool) -> None:
        assert weights_only is False  # the full state, so that the run resumes
        Path(path).write_bytes(b"half of step 2")
        raise KeyboardInterrupt

    trainer = SimpleNamespace(is_global_zero=True, save_checkpoint=dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_atomically(trainer, last)
    assert last.read_bytes() == b"step 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]

    trainer.save_checkpoint = lambda path, weights_only: Path(path).write_bytes(b"step 2")
    assert save_atomically(trainer, last) == last
    assert last.read_bytes() == b"step 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
