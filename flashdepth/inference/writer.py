"""Writing streamed depth to disk: the callback behind ``flashdepth predict``.

:meth:`flashdepth.task.FlashDepthTask.predict_step` streams clips through the
model, carrying the temporal state across consecutive batches of one video, and
returns relative inverse depth per frame. :class:`PredictionWriter` writes each
frame as soon as its batch is done (nothing is kept in memory)::

    {output_dir}/{dataset}/{scene}/{frame:06d}.npy   float16 (H, W)   or
    {output_dir}/{dataset}/{scene}/{frame:06d}.png   uint16 (H, W)
    {output_dir}/units.json                          what the numbers mean

Values are relative inverse depth on the ×100 scale of our recipes: ≈ 100 / depth
in metres for models trained with them (DAv2 weights: arbitrary affine scale).
The frame number is ``start_frame + t``: the index in the source video for
stride-1 clips and video files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from flashdepth.inference.sinks import PNG16_STEP

#: Formats the writer understands.
FORMATS = ("npy", "png16")


def units_record(file_format: str) -> dict[str, Any]:
    """The ``units.json`` content describing files written in ``file_format``."""
    record: dict[str, Any] = {
        "quantity": "relative inverse depth (disparity)",
        "scale": "x100: value ~= 100 / depth_in_metres for models trained with flashdepth "
        "recipes; Depth Anything V2 weights give an arbitrary affine scale",
        "sky": "0 (infinitely far)",
        "layout": "{dataset}/{scene}/{frame:06d}.<ext>, frame = start_frame + t",
        "format": file_format,
    }
    if file_format == "npy":
        record["dtype"] = "float16"
    else:
        record["dtype"] = "uint16"
        record["decode"] = (
            f"value = png / {1 / PNG16_STEP:g} (clipped to [0, {65535 * PNG16_STEP:g}])"
        )
    return record


class PredictionWriter(BasePredictionWriter):
    """Write every predicted frame to disk, one file per frame.

    Args:
        output_dir: Root folder of the written depth.
        file_format: ``"npy"`` (float16, lossless to ~3 significant digits) or
            ``"png16"`` (uint16, ``value * 100``, see :data:`PNG16_STEP`).
    """

    def __init__(self, output_dir: str = "predictions", file_format: str = "npy") -> None:
        super().__init__(write_interval="batch")
        if file_format not in FORMATS:
            raise ValueError(f"file_format must be one of {FORMATS}, got {file_format!r}")
        self.output_dir = Path(output_dir)
        self.file_format = file_format

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Create the output folder and state the units once."""
        if trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with open(self.output_dir / "units.json", "w") as f:
                json.dump(units_record(self.file_format), f, indent=2)

    def write_frame(self, inverse_depth: np.ndarray, path: Path) -> Path:
        """Write one ``(H, W)`` map (×100 relative inverse depth) to ``path`` + extension."""
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.file_format == "npy":
            target = path.with_suffix(".npy")
            np.save(target, inverse_depth.astype(np.float16))
            return target
        target = path.with_suffix(".png")
        scaled = np.clip(np.round(inverse_depth / PNG16_STEP), 0, 65535).astype(np.uint16)
        Image.fromarray(scaled).save(target)
        return target

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the frames of every non-padding clip of the batch."""
        depth = prediction["inverse_depth"].numpy()  # (B, T, H, W)
        for b in range(depth.shape[0]):
            if bool(prediction["is_padding"][b]):
                continue
            folder = self.output_dir / prediction["dataset"][b] / prediction["scene"][b]
            start = int(prediction["start_frame"][b])
            for t in range(depth.shape[1]):
                self.write_frame(depth[b, t], folder / f"{start + t:06d}")
