"""Lightning callbacks of the zoo: cross-cutting extras kept out of the task.

* :class:`DepthMediaLogger` writes what evaluation looks like to TensorBoard. It reads the
  prediction that ``FlashDepthTask.validation_step``/``test_step`` return, so swapping the
  logger (or dropping the pictures) never touches the task.
* :class:`StepProgressBar` is Lightning's rich bar counting the optimiser steps of a
  step-limited run (``max_steps``) instead of reading ``Epoch 3/-2``.
* :class:`LastCheckpoint` keeps ``last.ckpt``, saved atomically, at the end of ``fit``
  and after the step in progress when Ctrl-C stops it (with the command that resumes);
  ``flashdepth fit`` adds it to every run.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from flashdepth.visualize import log_depth_media

#: The file ``--ckpt_path last`` resumes from, in the run's checkpoint folder.
LAST_CHECKPOINT = "last.ckpt"


class DepthMediaLogger(Callback):
    """Every N evaluation batches, an RGB | ground truth | prediction grid and GIF video.

    The first non-padding clip of the batch is shown with the turbo colour map (near red,
    far blue); ground truth and prediction are each stretched between robust percentiles.
    Written by the global-zero process to every :class:`TensorBoardLogger` of the trainer
    under ``val_media/NNNN_<dataset>`` or ``test_media/NNNN_<dataset>``.

    Args:
        every_n_batches: Log batches whose index is a multiple of this (0 disables).
    """

    def __init__(self, every_n_batches: int = 50) -> None:
        super().__init__()
        if every_n_batches < 0:
            raise ValueError(f"every_n_batches must be >= 0, got {every_n_batches}")
        self.every_n_batches = every_n_batches

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Log validation media (not during the sanity check)."""
        if not trainer.sanity_checking:
            self._log(trainer, outputs, batch, batch_idx, "val")

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Log test media."""
        self._log(trainer, outputs, batch, batch_idx, "test")

    def _log(self, trainer: Trainer, outputs: Any, batch: Any, batch_idx: int, split: str) -> None:
        every = self.every_n_batches
        if every == 0 or batch_idx % every or not trainer.is_global_zero:
            return
        if not isinstance(outputs, dict) or "inverse_depth" not in outputs:
            return
        real = [b for b in range(len(batch["is_padding"])) if not bool(batch["is_padding"][b])]
        if not real:
            return
        b = real[0]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                log_depth_media(
                    logger.experiment,
                    f"{split}_media/{batch_idx:04d}_{batch['dataset'][b]}",
                    batch["image"][b],
                    batch["inverse_depth"][b],
                    outputs["inverse_depth"][b],
                    batch["valid"][b],
                    trainer.global_step,
                )


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, counting optimiser steps when ``max_steps`` ends the run.

    With ``max_steps`` and no ``max_epochs`` Lightning sets ``max_epochs = -1`` and its bar
    reads ``Epoch 3/-2`` over the batches of one epoch. Here the training bar of such a run
    goes from the step it starts at (a resumed run starts at the restored step) to
    ``max_steps``, across epochs, and is labelled ``Train · epoch N``. Runs limited by
    epochs keep Lightning's bar; evaluation bars are Lightning's.
    """

    def is_step_limited(self) -> bool:
        """Whether ``max_steps`` (and no ``max_epochs``) ends the run."""
        trainer = self.trainer
        return trainer.max_steps > 0 and trainer.max_epochs in (None, -1)

    @property
    def total_train_batches(self) -> int | float:
        """``max_steps`` for a step-limited run, else the batches of the epoch."""
        if self.is_step_limited():
            return self.trainer.max_steps
        return super().total_train_batches

    def train_description(self) -> str:
        """The label of the training bar."""
        return f"Train · epoch {self.trainer.current_epoch}"

    def _training_bar(self) -> int | None:
        """The training bar's task id, when this run counts steps and the bar is shown."""
        if self.progress is None or not self.is_step_limited():
            return None
        return self.train_progress_bar_id

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Lightning's epoch start, then the bar restarted at the run's step.

        A reset keeps the speed estimate free of the jump from 0.
        """
        super().on_train_epoch_start(trainer, pl_module)
        task = self._training_bar()
        if task is not None:
            self.progress.reset(
                task,
                total=trainer.max_steps,
                completed=trainer.global_step,
                description=self.train_description(),
            )
            self.refresh()

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Lightning's update (bar and metrics), counting the run's optimiser steps.

        It counts them instead of the epoch's batches.
        """
        index = trainer.global_step - 1 if self.is_step_limited() else batch_idx
        super().on_train_batch_end(trainer, pl_module, outputs, batch, index)
        task = self._training_bar()
        if task is not None:  # a bar created mid-epoch (a resumed run) gets our label too
            self.progress.update(task, description=self.train_description())


class LastCheckpoint(Callback):
    """Keep ``last.ckpt`` in the run's checkpoint folder.

    It holds the state after the final step of ``fit``, or after the step in progress when
    Ctrl-C stopped it, with the command that resumes.

    ``ModelCheckpoint`` saves when its schedule says (validation, every N steps), so the end of
    a run whose ``max_steps`` falls between two saves would be lost; this callback saves once
    more when training ends. A KeyboardInterrupt can land anywhere in a step (inside the
    optimiser's update, between Lightning's progress counters), and a checkpoint of that
    moment resumes a little off. So while training runs, the first Ctrl-C only asks to stop:
    the step in progress (and a validation in progress) completes, then the state is saved
    where Lightning saves step checkpoints, at the end of a training batch (at the end of the
    epoch when the batch is the epoch's last, so that the resumed run draws the next epoch's
    data), and ``fit`` stops through Lightning's graceful Ctrl-C shutdown. A second Ctrl-C
    stops at once without saving. Under DDP the ranks agree on stopping at every step.

    Files are written under a temporary name in the folder of the trainer's first
    ``ModelCheckpoint`` and renamed to ``last.ckpt`` (:func:`save_atomically`), where
    ``--ckpt_path last`` finds them. Nothing is saved for ``fast_dev_run``, before the first
    step, or without a ``ModelCheckpoint``.

    Args:
        resume_command: The command that resumes the run, printed as given (``None``: a
            generic hint).
    """

    def __init__(self, resume_command: str | None = None) -> None:
        super().__init__()
        self.resume_command = resume_command or "the same command with --ckpt_path last"
        self.saved: Path | None = None
        self.requested = False
        self._previous_handler: Any = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        """First Ctrl-C: ask to stop after the step; second: stop now (KeyboardInterrupt)."""
        if self.requested:
            self._restore_handler()
            raise KeyboardInterrupt
        self.requested = True
        os.write(
            2,
            b"\nCtrl-C: saving last.ckpt after this step, then stopping "
            b"(Ctrl-C again: stop now without saving)\n",
        )

    def _restore_handler(self) -> None:
        if signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous_handler)

    def _save(self, trainer: Trainer) -> None:
        """Save ``last.ckpt`` (every rank calls this)."""
        last = _last_checkpoint(trainer)
        if last is not None and trainer.global_step > 0 and not trainer.fast_dev_run:
            self.saved = save_atomically(trainer, last)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Take over Ctrl-C (signal handlers live in the main thread only)."""
        self.requested, self.saved = False, None
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Save and stop when any rank was asked to.

        At an epoch's last batch, wait for the epoch's end.
        """
        if batch_idx + 1 < trainer.num_training_batches:
            self._stop_if_requested(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save and stop when any rank was asked to."""
        self._stop_if_requested(trainer)

    def _stop_if_requested(self, trainer: Trainer) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        self._save(trainer)
        if trainer.is_global_zero:
            where = f"saved {display_path(self.saved)}" if self.saved else "nothing saved"
            print(f"\nInterrupted at step {trainer.global_step}: {where}", flush=True)
            if self.saved:
                print(f"Resume with:\n  {self.resume_command}", flush=True)
        raise KeyboardInterrupt

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Save the final state; give Ctrl-C back."""
        self._restore_handler()
        self._save(trainer)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """A Ctrl-C that stopped ``fit`` at once: say that nothing was saved, and what resumes."""
        if not isinstance(exception, KeyboardInterrupt) or self.saved is not None:
            return
        if trainer.state.fn == "fit" and trainer.is_global_zero:
            print(f"\nStopped at step {trainer.global_step} without saving.", flush=True)
            last = _last_checkpoint(trainer)
            if last is not None and last.is_file():
                print(f"{display_path(last)} resumes with:\n  {self.resume_command}", flush=True)


def display_path(path: str | Path) -> str:
    """``path`` relative to the working folder when it lies inside it (as a user types it)."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def _last_checkpoint(trainer: Trainer) -> Path | None:
    """``last.ckpt`` in the folder of the trainer's first ``ModelCheckpoint``.

    ``None``: checkpointing is off.
    """
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath:
            return Path(callback.dirpath) / LAST_CHECKPOINT
    return None


def save_atomically(trainer: Trainer, path: Path) -> Path:
    """Save the trainer's checkpoint to ``path`` through a temporary file in the same folder.

    Args:
        trainer: The trainer whose state is saved (every rank calls this; rank zero writes).
        path: The final file.

    Returns:
        ``path``, which holds either its previous content or the complete new checkpoint.
    """
    partial = path.with_name(path.name + ".partial")
    try:
        trainer.save_checkpoint(partial, weights_only=False)  # the full state: resumable
        if trainer.is_global_zero:
            os.replace(partial, path)
    finally:
        if trainer.is_global_zero and partial.exists():
            partial.unlink()
    return path
