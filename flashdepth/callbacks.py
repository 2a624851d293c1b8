"""Lightning callbacks of the zoo: cross-cutting extras kept out of the task.

:class:`DepthMediaLogger` writes what evaluation looks like to TensorBoard. It reads the
prediction that ``FlashDepthTask.validation_step``/``test_step`` return, so swapping the
logger (or dropping the pictures) never touches the task.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger

from flashdepth.visualize import log_depth_media


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
