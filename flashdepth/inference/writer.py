"""Writing predicted depth to disk: the callback behind ``flashdepth predict``.

:meth:`flashdepth.task.FlashDepthTask.predict_step` streams clips through
:class:`~flashdepth.inference.clip_predictor.ClipPredictor` (the temporal state carried per
video) and returns relative inverse depth per frame. :class:`PredictionWriter` hands every
frame, as soon as its batch is done, to the sinks of ``flashdepth stream``
(:func:`~flashdepth.inference.sinks.make_sinks`), one set per video; nothing is kept in
memory. Each ``(dataset, scene)`` is one video, laid out as ``flashdepth stream`` lays out
``{out}/{name}``::

    {output_dir}/{dataset}/{scene}/npy/{frame:06d}.npy     float32 (H, W)
    {output_dir}/{dataset}/{scene}/exr/{frame:06d}.exr     float32, channel "Z"
    {output_dir}/{dataset}/{scene}/png16/{frame:06d}.png   uint16, value = png / 100
    {output_dir}/{dataset}/{scene}/npz/{frame:06d}.npz     float32, key "inverse_depth"
    {output_dir}/{dataset}/{scene}/units.json              what the numbers are; written last

Values are relative inverse depth on the ×100 scale of our recipes: ≈ 100 / depth in metres
for models trained with them (Depth Anything V2 weights: affine-invariant). The frame number
is ``start_frame + t``: the index in the source video for stride-1 clips and video files.

``units.json`` (:func:`~flashdepth.inference.sinks.write_units`) is written when prediction
ends, by rank 0 for every video any rank wrote (a video split across ranks counts all its
frames); a run that fails or is interrupted leaves none, so
:func:`~flashdepth.inference.sinks.completed` tells finished videos apart. Per-frame formats
only: the mp4 sinks need whole videos in order on one process (use ``flashdepth stream``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from flashdepth.inference.frames import Frame, VideoInfo
from flashdepth.inference.sinks import FormatSink, make_sinks, write_units

#: Formats the writer understands: one file per frame.
FORMATS = ("exr", "png16", "npy", "npz")
#: A video of a prediction run: ``(dataset, scene)``.
Video = tuple[str, str]
#: What was written of a video: frames and their ``(H, W)``.
Written = tuple[int, tuple[int, int]]


class PredictionWriter(BasePredictionWriter):
    """Write every predicted frame with the sinks of ``flashdepth stream``.

    Args:
        output_dir: Root folder of the written depth.
        formats: Comma-separated per-frame formats: ``exr``, ``png16``, ``npy``, ``npz``
            (see :mod:`flashdepth.inference.sinks`).
    """

    def __init__(self, output_dir: str = "predictions", formats: str = "npy") -> None:
        super().__init__(write_interval="batch")
        names = [name.strip() for name in formats.split(",") if name.strip()]
        if not names or any(name not in FORMATS for name in names):
            raise ValueError(
                f"formats={formats!r}: PredictionWriter writes per-frame formats, choose from "
                f"{', '.join(FORMATS)}; for mp4 depth videos use flashdepth stream"
            )
        make_sinks(names)  # refuses a format given twice
        self.output_dir = Path(output_dir)
        self.formats = names
        self._videos: dict[Video, list[FormatSink]] = {}
        self._written: dict[Video, Written] = {}

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Forget the videos of an earlier run."""
        self._videos, self._written = {}, {}

    def _sinks(self, dataset: str, scene: str, size: tuple[int, int]) -> list[FormatSink]:
        """The open sinks of video ``(dataset, scene)``; opened at its first frame."""
        video = (dataset, scene)
        if video not in self._videos:
            info = VideoInfo(scene, f"{dataset}/{scene}", width=size[1], height=size[0])
            sinks = make_sinks(self.formats)
            for sink in sinks:
                sink.open(info, self.output_dir / dataset)
            self._videos[video] = sinks
        return self._videos[video]

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Write the frames of every non-padding clip of the batch.

        Each frame's picture is the network input, ``batch["image"]``.
        """
        depth = prediction["inverse_depth"].numpy()  # (B, T, H, W)
        size = (int(depth.shape[-2]), int(depth.shape[-1]))
        pictures = (batch["image"] * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2)
        pictures = pictures.cpu().numpy()  # (B, T, 3, h, w) -> (B, T, h, w, 3), network size
        for b in range(depth.shape[0]):
            if bool(prediction["is_padding"][b]):
                continue
            video = (prediction["dataset"][b], prediction["scene"][b])
            sinks = self._sinks(*video, size)
            start = int(prediction["start_frame"][b])
            for t in range(depth.shape[1]):
                frame = Frame(start + t, pictures[b, t])
                for sink in sinks:
                    sink.write(frame, depth[b, t])
            frames, _ = self._written.get(video, (0, size))
            self._written[video] = (frames + depth.shape[1], size)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Close every video; rank 0 writes each video's ``units.json``."""
        for sinks in self._videos.values():
            for sink in sinks:
                sink.close()
        written = merge_written(_gather_ranks(self._written))
        if not trainer.is_global_zero:
            return
        about = {
            "model": type(pl_module.model).__name__,
            "written by": "flashdepth predict",
            "precision": str(trainer.precision),
            "checkpoint": trainer.ckpt_path,
        }
        for (dataset, scene), (frames, size) in sorted(written.items()):
            info = VideoInfo(scene, f"{dataset}/{scene}", width=size[1], height=size[0])
            folder = self.output_dir / dataset / scene
            write_units(folder, info, about, self.formats, frames=frames, depth_size=size)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Abort every open video: the frames written stay valid, no ``units.json``."""
        for sinks in self._videos.values():
            for sink in sinks:
                sink.abort()


def merge_written(parts: list[dict[Video, Written]]) -> dict[Video, Written]:
    """Frames per video summed over the ranks' records.

    A video split across ranks counts every rank's frames.
    """
    merged: dict[Video, Written] = {}
    for part in parts:
        for video, (frames, size) in part.items():
            merged[video] = (merged.get(video, (0, size))[0] + frames, size)
    return merged


def _gather_ranks(written: dict[Video, Written]) -> list[dict[Video, Written]]:
    """Every rank's record of what it wrote (this rank's alone outside DDP)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [written]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, written)
    return gathered
