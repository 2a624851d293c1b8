"""The Lightning task that trains and evaluates every model of the zoo.

``FlashDepthTask`` is thin: the network is an injected ``nn.Module`` (YAML
``class_path``/``init_args``), the loss comes from :mod:`flashdepth.losses` and
the metrics from :mod:`flashdepth.metrics`. What the task adds is the training
recipe of the paper (DESIGN.md §4):

* parameter groups by name prefix with their own learning rates
  (``pretrained.*`` ViT, ``depth_head.*`` DPT, ``temporal*`` temporal,
  ``fusion.*`` fusion), optional freezing per group, AdamW and a linear warm-up;
* back-propagation through time over the training clip (the model's forward);
* streaming evaluation of whole videos with per-dataset metrics synced across
  processes and media for TensorBoard; streaming prediction across batches.

Weights to start from are an argument (``init_weights``), loaded when a run starts
unless a Lightning checkpoint is restored (``--ckpt_path`` resumes).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import LambdaLR

from flashdepth.checkpoints import load_weights, resolve_weights
from flashdepth.losses import get_loss
from flashdepth.metrics import VideoDepthMetrics
from flashdepth.transforms import normalize, postprocess
from flashdepth.visualize import log_depth_media

#: Parameter groups of the optimiser and the name prefixes (inside the model) they own.
PARAMETER_GROUPS: dict[str, tuple[str, ...]] = {
    "vit": ("pretrained.",),
    "dpt": ("depth_head.",),
    "temporal": ("temporal.", "temporal_out."),
    "fusion": ("fusion.",),
}


def parameter_group(name: str) -> str | None:
    """The optimiser group of a model parameter, from its name; ``None`` if it has none."""
    for group, prefixes in PARAMETER_GROUPS.items():
        if name.startswith(prefixes):
            return group
    return None


class LinearWarmup:
    """Learning-rate factor: linear from ``start_factor`` to 1 over ``steps``, then 1.

    A callable object rather than a lambda so the scheduler state can be saved.

    Args:
        steps: Optimiser steps of the warm-up (0 disables it).
        start_factor: Factor at step 0.
    """

    def __init__(self, steps: int, start_factor: float) -> None:
        self.steps = steps
        self.start_factor = start_factor

    def __call__(self, step: int) -> float:
        if step >= self.steps:
            return 1.0
        return self.start_factor + (1.0 - self.start_factor) * step / self.steps


def _record_linked_width(spec: Any, model: nn.Module) -> None:
    """Write the temporal ``dim`` that ``flashdepth.cli`` links to the encoder into ``spec``.

    A linked argument is computed by the CLI and is absent from the model's given config, so
    without it ``load_from_checkpoint`` could not rebuild the temporal component.
    """
    temporal = getattr(model, "temporal", None)
    init_args = spec.get("init_args") if isinstance(spec, dict) else None
    temporal_spec = init_args.get("temporal") if isinstance(init_args, dict) else None
    if temporal is not None and isinstance(temporal_spec, dict):
        temporal_spec.setdefault("init_args", {})["dim"] = temporal.dim


class FlashDepthTask(LightningModule):
    """Train, evaluate and stream any depth model of the zoo.

    Args:
        model: The network (``FlashDepth``, ``DepthAnythingV2``, ...). Streaming models
            expose ``init_state``/``step``; others are run frame by frame.
        init_weights: Weights to start from: a DAv2 ``.pth``, a released FlashDepth
            ``.pth``, one of our ``.ckpt`` files, or a name from
            ``checkpoints/registry.json``. Loaded when fit/validate/test/predict starts,
            unless a Lightning checkpoint is restored (which already holds the weights).
        loss: ``"l1"`` (masked L1 on 100·inverse depth) or ``"ssi"`` (per-clip scale and
            shift invariant).
        lr_vit: Learning rate of the ViT encoder (``pretrained.*``).
        lr_dpt: Learning rate of the DPT decoder (``depth_head.*``).
        lr_temporal: Learning rate of the temporal component (``temporal*``).
        lr_fusion: Learning rate of the hybrid fusion (``fusion.*``).
        freeze: Groups (``vit``, ``dpt``, ``temporal``, ``fusion``) kept frozen.
        betas: AdamW betas.
        weight_decay: AdamW weight decay.
        warmup_steps: Optimiser steps of the linear warm-up.
        warmup_start_factor: Learning-rate factor at the first step.
        grad_checkpointing: Recompute ViT blocks and DPT stages in the backward pass.
        log_media_every_n_val_steps: Every N evaluation batches, write an RGB | ground
            truth | prediction grid and video to TensorBoard (0 disables).
        metrics_protocol: ``"flashdepth"`` (one scale and shift per video) or
            ``"vda"`` (Video Depth Anything, per frame); see :mod:`flashdepth.metrics`.
        max_depth: Depth cap of the metrics, metres.
    """

    def __init__(
        self,
        model: nn.Module,
        init_weights: str | None = None,
        loss: str = "l1",
        lr_vit: float = 5e-6,
        lr_dpt: float = 5e-5,
        lr_temporal: float = 1e-4,
        lr_fusion: float = 1e-4,
        freeze: list[str] | None = None,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.01,
        warmup_steps: int = 1000,
        warmup_start_factor: float = 1e-4,
        grad_checkpointing: bool = False,
        log_media_every_n_val_steps: int = 50,
        metrics_protocol: str = "flashdepth",
        max_depth: float = 70.0,
    ) -> None:
        super().__init__()
        # From YAML (LightningCLI) the model's class_path/init_args are saved, so
        # load_from_checkpoint rebuilds it; a module built in Python is not a
        # hyper-parameter (load_from_checkpoint then needs model=... again).
        from_cli = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=None if from_cli else ["model"])
        if from_cli:
            _record_linked_width(self.hparams["model"], model)
        self.model = model
        self._weights_ready = False
        self._stream: tuple[list[tuple[str, str, int]], Tensor | None] | None = None
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def configure_models(self) -> None:
        """Check the parameter groups, freeze groups, switch activation checkpointing."""
        freeze = list(self.hparams.freeze or [])
        unknown = sorted(set(freeze) - set(PARAMETER_GROUPS))
        if unknown:
            raise ValueError(
                f"freeze={freeze} names unknown groups {unknown}; "
                f"the groups are {list(PARAMETER_GROUPS)}"
            )
        orphans = [
            name
            for name, p in self.model.named_parameters()
            if p.requires_grad and parameter_group(name) is None
        ]
        if orphans:
            raise ValueError(
                f"{len(orphans)} trainable parameters belong to no optimiser group, e.g. "
                f"{orphans[:5]}; group prefixes are {PARAMETER_GROUPS}. Freeze them in the "
                "model (requires_grad=False) or name the module after a group."
            )
        for name, p in self.model.named_parameters():
            if parameter_group(name) in freeze:
                p.requires_grad_(False)
        if self.hparams.grad_checkpointing:
            if not hasattr(self.model, "set_grad_checkpointing"):
                raise ValueError(
                    f"grad_checkpointing=True but {type(self.model).__name__} has no "
                    "set_grad_checkpointing(); set grad_checkpointing: false"
                )
            self.model.set_grad_checkpointing(True)

    def configure_losses(self) -> None:
        """Pick the training loss by name."""
        self.loss_fn = get_loss(self.hparams.loss)

    def configure_metrics(self) -> None:
        """Per-dataset metric collections, filled as datasets appear (see _metric)."""
        self.val_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the trainable groups, with a per-step linear warm-up."""
        learning_rates = {
            "vit": self.hparams.lr_vit,
            "dpt": self.hparams.lr_dpt,
            "temporal": self.hparams.lr_temporal,
            "fusion": self.hparams.lr_fusion,
        }
        params: dict[str, list[nn.Parameter]] = {group: [] for group in PARAMETER_GROUPS}
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                params[parameter_group(name)].append(p)
        groups = [
            {"name": group, "params": ps, "lr": learning_rates[group]}
            for group, ps in params.items()
            if ps
        ]
        if not groups:
            raise ValueError("every parameter is frozen: nothing to train (check `freeze`)")
        optimizer = AdamW(
            groups, betas=tuple(self.hparams.betas), weight_decay=self.hparams.weight_decay
        )
        warmup = LinearWarmup(self.hparams.warmup_steps, self.hparams.warmup_start_factor)
        scheduler = LambdaLR(optimizer, warmup)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A restored checkpoint holds the weights: ``init_weights`` is not loaded."""
        self._weights_ready = True

    def _prepare_weights(self, stage: str) -> None:
        """Load ``init_weights`` once; refuse to test or predict with random weights."""
        if self._weights_ready:
            return
        if self.hparams.init_weights:
            report = load_weights(self.model, resolve_weights(self.hparams.init_weights))
            self.print(f"init_weights: {report}")
        elif stage in ("test", "predict"):
            raise RuntimeError(
                f"refusing to {stage} a model with random weights: give trained weights with "
                "--ckpt_path path/to/run.ckpt (a Lightning checkpoint of this task) or "
                "--model.init_weights path/to/weights.pth (DAv2, released FlashDepth or ours)"
            )
        self._weights_ready = True

    def on_fit_start(self) -> None:
        self._prepare_weights("fit")

    def on_validation_start(self) -> None:
        self._prepare_weights("validate")

    def on_test_start(self) -> None:
        self._prepare_weights("test")

    def on_predict_start(self) -> None:
        self._prepare_weights("predict")
        self._stream = None

    def forward(self, clip: Tensor) -> Tensor:
        """Relative inverse depth ``(B, T, H, W)`` (×100 ≈ 100/m) of ImageNet-normalised
        clips ``(B, T, 3, H, W)``; gradients flow through time for streaming models."""
        if hasattr(self.model, "init_state"):
            return self.model(clip)
        return self.model(clip.flatten(0, 1)).unflatten(0, clip.shape[:2])  # (B*T,) -> (B, T)

    def stream(self, clip: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Frame after frame with constant memory in the clip length (evaluation).

        Args:
            clip: ``(B, T, 3, H, W)`` ImageNet-normalised.
            state: Temporal state to start from (``None``: a fresh video).

        Returns:
            ``(inverse_depth (B, T, H, W), final state)``; the state is ``None`` for
            per-frame models.
        """
        frames = []
        if not hasattr(self.model, "init_state"):
            for t in range(clip.shape[1]):
                frames.append(self.model(clip[:, t]))
            return torch.stack(frames, dim=1), None
        if state is None:
            state = self.model.init_state(clip.shape[0])
        for t in range(clip.shape[1]):
            depth, state = self.model.step(clip[:, t], state)
            frames.append(depth)
        return torch.stack(frames, dim=1), state

    @staticmethod
    def _resize(inverse_depth: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
        """Bilinear resize of ``(B, T, h, w)`` maps to ``(B, T, *size)``; values unchanged."""
        if tuple(inverse_depth.shape[-2:]) == tuple(size):
            return inverse_depth  # training crops: prediction and target already agree
        resized = postprocess(inverse_depth.flatten(0, 1).float(), tuple(size))  # (B*T, H, W)
        return resized.unflatten(0, inverse_depth.shape[:2])  # -> (B, T, H, W)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """L1 (or SSI) loss of one batch of clips, back-propagated through time."""
        prediction = self(normalize(batch["image"]))
        prediction = self._resize(prediction, batch["inverse_depth"].shape[-2:])
        loss = self.loss_fn(prediction, batch["inverse_depth"], batch["valid"])
        batch_size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        for group in self.optimizers().param_groups:
            self.log(f"train/lr_{group['name']}", group["lr"], batch_size=batch_size)
        if "skipped" in batch:
            # corrupt samples the data pipeline dropped before this batch's samples
            self.log(
                "train/skipped_samples",
                batch["skipped"].float().sum(),
                on_step=False,
                on_epoch=True,
                reduce_fx="sum",
                sync_dist=True,
                batch_size=batch_size,
            )
        return loss

    def _metric(self, split: str, dataset: str) -> VideoDepthMetrics:
        """The metric collection of one dataset, created (on this device) when first seen."""
        metrics = self.val_metrics if split == "val" else self.test_metrics
        if dataset not in metrics:
            metrics[dataset] = VideoDepthMetrics(
                protocol=self.hparams.metrics_protocol, max_depth=self.hparams.max_depth
            ).to(self.device)
        return metrics[dataset]

    def _evaluate(self, batch: dict[str, Any], batch_idx: int, split: str) -> None:
        """Stream whole videos, resize to the depth resolution, update per-dataset metrics."""
        prediction, _ = self.stream(normalize(batch["image"]))
        prediction = self._resize(prediction, batch["inverse_depth"].shape[-2:]).float()
        real = [b for b in range(prediction.shape[0]) if not bool(batch["is_padding"][b])]
        for b in real:
            self._metric(split, batch["dataset"][b]).update(
                prediction[b], batch["inverse_depth"][b], batch["valid"][b]
            )
        every = self.hparams.log_media_every_n_val_steps
        if real and every > 0 and batch_idx % every == 0 and not self.trainer.sanity_checking:
            self._log_media(batch, prediction, real[0], f"{split}_media/{batch_idx:04d}")

    def _log_media(self, batch: dict[str, Any], prediction: Tensor, b: int, tag: str) -> None:
        if not self.trainer.is_global_zero:
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                log_depth_media(
                    logger.experiment,
                    f"{tag}_{batch['dataset'][b]}",
                    batch["image"][b],
                    batch["inverse_depth"][b],
                    prediction[b],
                    batch["valid"][b],
                    self.global_step,
                )

    def _log_epoch_metrics(self, split: str) -> None:
        """Compute (synced) metrics of every dataset any process saw; log them and their mean."""
        metrics = self.val_metrics if split == "val" else self.test_metrics
        names = set(metrics.keys())
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[list[str] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, sorted(names))
            names = {name for ranks in gathered for name in ranks or []}
        totals: dict[str, list[float]] = {}
        for name in sorted(names):
            values = self._metric(split, name).compute()
            for key, value in values.items():
                self.log(f"{split}/{name}/{key}", value, sync_dist=False, rank_zero_only=False)
                totals.setdefault(key, []).append(float(value))
            self._metric(split, name).reset()
        for key, per_dataset in totals.items():
            self.log(f"{split}/{key}", sum(per_dataset) / len(per_dataset), sync_dist=False)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def _carried_state(self, batch: dict[str, Any]) -> Tensor | None:
        """The state to start this batch from: per row, the previous batch's final state
        if the row continues the same video (same dataset and scene, and a first frame id one
        clip length after the previous one), else fresh. Shards stored at a stride > 1 advance
        frame ids faster, so their clips start fresh: state is never carried across a gap."""
        if self._stream is None or not hasattr(self.model, "init_state"):
            return None
        rows, previous = self._stream
        batch_size = batch["image"].shape[0]
        dim = self.model.temporal.state_batch_dim
        fresh = self.model.init_state(batch_size)
        chosen = []
        for b in range(batch_size):
            here = (batch["dataset"][b], batch["scene"][b], int(batch["start_frame"][b]))
            continues = b < len(rows) and rows[b] == here
            chosen.append(previous.select(dim, b) if continues else fresh.select(dim, b))
        return torch.stack(chosen, dim=dim)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Stream a batch of clips, continuing the videos of the previous batch.

        Returns:
            The batch's identifiers and ``inverse_depth (B, T, H, W)`` float32 on the CPU,
            relative inverse depth (×100 ≈ 100/m for our recipes), at the depth resolution
            (``inverse_depth`` of the batch), the ``output_size`` of the batch, or else the
            model's input resolution.
        """
        prediction, state = self.stream(normalize(batch["image"]), self._carried_state(batch))
        time = prediction.shape[1]
        rows = [
            (batch["dataset"][b], batch["scene"][b], int(batch["start_frame"][b]) + time)
            for b in range(prediction.shape[0])
        ]
        self._stream = (rows, state)
        if "inverse_depth" in batch:
            size = batch["inverse_depth"].shape[-2:]
        elif "output_size" in batch:
            size = tuple(int(s) for s in batch["output_size"][0])
        else:
            size = prediction.shape[-2:]
        output = {k: batch[k] for k in ("key", "dataset", "scene", "start_frame", "is_padding")}
        output["inverse_depth"] = self._resize(prediction, size).float().cpu()
        return output
