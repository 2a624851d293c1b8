"""The Lightning task that trains and evaluates every model of the zoo.

``FlashDepthTask`` is thin: the network is an injected ``nn.Module`` (YAML
``class_path``/``init_args``), the loss comes from :mod:`flashdepth.losses` and
the metrics from :mod:`flashdepth.metrics`. What the task adds is the training
recipe of the paper (Section 4 and the released training code's settings):

* parameter groups with their own learning rates, as the model names them
  (``parameter_groups()``: ``vit``, ``dpt``, ``temporal``, ``fusion``; frozen parts such
  as the hybrid's teacher belong to none), optional freezing per group, AdamW and a
  linear warm-up (torch's ``LinearLR``);
* back-propagation through time over the training clip (the model's clip forward);
* streaming evaluation of whole videos with per-dataset metrics synced across
  processes; streaming prediction across batches.

The task talks to the model only through the zoo's model contract
(:class:`~flashdepth.models.contract.StreamingDepthModel`). Pictures for TensorBoard
come from a callback (:class:`flashdepth.callbacks.DepthMediaLogger`), which reads what
``validation_step``/``test_step`` return.

Weights to start from are an argument (``init_weights``: one checkpoint, or one per
weight part of the model, e.g. the hybrid's ``student`` and ``teacher``), loaded when a
run starts unless a Lightning checkpoint is restored (``--ckpt_path`` resumes).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch import LightningModule
from torch import Tensor, nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import LinearLR

from flashdepth.checkpoints import load_weights, resolve_weights
from flashdepth.inference.clip_predictor import ClipPredictor
from flashdepth.losses import get_loss
from flashdepth.metrics import VideoDepthMetrics
from flashdepth.models.contract import GROUP_NAMES, StreamingDepthModel
from flashdepth.transforms import normalize, postprocess

_MODEL_FROM_CONFIG: ContextVar[bool] = ContextVar("flashdepth_model_from_config", default=False)


class MissingWeightsError(RuntimeError):
    """Testing or predicting was asked of a model that has no trained weights."""


@contextmanager
def model_from_config() -> Iterator[None]:
    """Tell tasks built inside that their ``model`` comes from a config.

    The config (class_path and init_args) is what ``save_hyperparameters`` records, so
    ``load_from_checkpoint`` rebuilds the model.

    ``flashdepth.cli`` wraps its instantiation in this; a task built in Python records no
    model (``load_from_checkpoint`` then needs ``model=...``), and copies no weights into
    its hyper-parameters.
    """
    token = _MODEL_FROM_CONFIG.set(True)
    try:
        yield
    finally:
        _MODEL_FROM_CONFIG.reset(token)


class FlashDepthTask(LightningModule):
    """Train, evaluate and stream any depth model of the zoo.

    Args:
        model: The network: any :class:`~flashdepth.models.contract.StreamingDepthModel`
            (``FlashDepth``, ``FlashDepthHybrid``, ``DepthAnythingV2``, ...).
        init_weights: Weights to start from: a DAv2 ``.pth``, a released FlashDepth
            ``.pth``, one of our ``.ckpt`` files or a weights registry name
            (:func:`flashdepth.checkpoints.registry`); or one such source per weight part of
            the model (``{student: ..., teacher: ...}`` for the hybrid). Loaded when
            fit/validate/test/predict starts (see ``strict_weights``), unless a Lightning
            checkpoint is restored (which already holds the weights).
        strict_weights: Refuse ``init_weights`` that do not fit the model (missing,
            unexpected or mis-shaped keys); ``False`` loads the tensors that fit and keeps
            the initialisation of the rest.
        loss: ``"l1"`` (masked L1 on 100·inverse depth) or ``"ssi"`` (per-clip scale and
            shift invariant).
        lr_vit: Learning rate of the ViT encoder.
        lr_dpt: Learning rate of the DPT decoder.
        lr_temporal: Learning rate of the temporal component.
        lr_fusion: Learning rate of the fusion (hybrid cross-attention, upsamplers).
        freeze: Groups (``vit``, ``dpt``, ``temporal``, ``fusion``) kept frozen.
        betas: AdamW betas.
        weight_decay: AdamW weight decay.
        warmup_steps: Optimiser steps of the linear warm-up.
        warmup_start_factor: Learning-rate factor at the first step.
        grad_checkpointing: Recompute activations (ViT blocks, DPT stages) in the backward.
        metrics_protocol: ``"flashdepth"`` (one scale and shift per video) or
            ``"vda"`` (Video Depth Anything, per frame); see :mod:`flashdepth.metrics`.
        max_depth: Depth cap of the metrics, metres.
    """

    def __init__(
        self,
        model: nn.Module,
        init_weights: str | dict[str, str] | None = None,
        strict_weights: bool = True,
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
        metrics_protocol: str = "flashdepth",
        max_depth: float = 70.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=None if _MODEL_FROM_CONFIG.get() else ["model"])
        if not isinstance(model, StreamingDepthModel):
            raise TypeError(
                f"{type(model).__name__} does not satisfy the zoo's model contract "
                "(flashdepth.models.contract.StreamingDepthModel: init_state, step, forward, "
                "forward_with_state, parameter_groups, weight_parts, set_grad_checkpointing)"
            )
        self.model: StreamingDepthModel = model
        self._weights_ready = False
        self._clips = ClipPredictor(model)
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def configure_models(self) -> None:
        """Check the model's parameter groups, freeze groups, switch activation checkpointing."""
        freeze = list(self.hparams.freeze or [])
        unknown = sorted(set(freeze) - set(GROUP_NAMES))
        if unknown:
            raise ValueError(
                f"freeze={freeze} names unknown groups {unknown}; "
                f"the groups are {list(GROUP_NAMES)}"
            )
        groups = self.model.parameter_groups()
        strange = sorted(set(groups) - set(GROUP_NAMES))
        if strange:
            raise ValueError(
                f"{type(self.model).__name__}.parameter_groups() returned unknown groups "
                f"{strange}; the optimiser knows {list(GROUP_NAMES)}"
            )
        grouped = {id(p) for params in groups.values() for p in params}
        orphans = [
            name
            for name, p in self.model.named_parameters()
            if p.requires_grad and id(p) not in grouped
        ]
        if orphans:
            raise ValueError(
                f"{len(orphans)} trainable parameters of {type(self.model).__name__} are in no "
                f"parameter group, e.g. {orphans[:5]}: return them from parameter_groups() or "
                "freeze them in the model (requires_grad=False)"
            )
        for group in freeze:
            for p in groups.get(group, []):
                p.requires_grad_(False)
        if self.hparams.grad_checkpointing:
            self.model.set_grad_checkpointing(True)

    def configure_losses(self) -> None:
        """Pick the training loss by name."""
        self.loss_fn = get_loss(self.hparams.loss)

    def configure_metrics(self) -> None:
        """Per-dataset metric collections, filled as datasets appear (see _metric)."""
        self.val_metrics = nn.ModuleDict()
        self.test_metrics = nn.ModuleDict()

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the model's trainable groups, with a per-step linear warm-up."""
        learning_rates = {
            "vit": self.hparams.lr_vit,
            "dpt": self.hparams.lr_dpt,
            "temporal": self.hparams.lr_temporal,
            "fusion": self.hparams.lr_fusion,
        }
        groups = []
        for name, params in self.model.parameter_groups().items():
            trainable = [p for p in params if p.requires_grad]
            if trainable:
                groups.append({"name": name, "params": trainable, "lr": learning_rates[name]})
        if not groups:
            raise ValueError("every parameter is frozen: nothing to train (check `freeze`)")
        optimizer = AdamW(
            groups, betas=tuple(self.hparams.betas), weight_decay=self.hparams.weight_decay
        )
        steps = self.hparams.warmup_steps
        start = self.hparams.warmup_start_factor if steps > 0 else 1.0
        scheduler = LinearLR(
            optimizer, start_factor=start, end_factor=1.0, total_iters=max(1, steps)
        )
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
        weights, strict = self.hparams.init_weights, self.hparams.strict_weights
        if isinstance(weights, dict):
            for part, source in weights.items():
                report = load_weights(self.model, resolve_weights(source), strict=strict, part=part)
                self.print(f"init_weights[{part}]: {report}")
        elif weights:
            report = load_weights(self.model, resolve_weights(weights), strict=strict)
            self.print(f"init_weights: {report}")
        elif stage in ("test", "predict"):
            raise MissingWeightsError(
                f"refusing to {stage} a model with random weights: give trained weights with "
                "--ckpt_path path/to/run.ckpt (a Lightning checkpoint of this task) or "
                "--model.init_weights path/to/weights.pth (DAv2, released FlashDepth or ours)"
            )
        self._weights_ready = True

    def on_fit_start(self) -> None:
        """Load ``init_weights`` (once), then rebuild the metrics for fit's validation."""
        self._prepare_weights("fit")
        # fresh metrics: a validate() before fit made their states inference-mode tensors,
        # which fit's validation (run without inference mode) cannot update
        self.configure_metrics()

    def on_validation_start(self) -> None:
        """Load ``init_weights`` (once) before validating."""
        self._prepare_weights("validate")

    def on_test_start(self) -> None:
        """Load ``init_weights`` (once); refuse to test with random weights."""
        self._prepare_weights("test")

    def on_predict_start(self) -> None:
        """Load ``init_weights`` (once; refuse random weights) and close every video's stream."""
        self._prepare_weights("predict")
        self._clips.reset()

    def forward(self, clip: Tensor) -> Tensor:
        """Relative inverse depth ``(B, T, H, W)`` of ImageNet-normalised clips.

        The clips are ``(B, T, 3, H, W)``; the depth is on the ×100 scale (≈ 100/m).
        Gradients flow through time.
        """
        return self.model(clip)

    def stream(self, clip: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Frame after frame with constant memory in the clip length (evaluation).

        Args:
            clip: ``(B, T, 3, H, W)`` ImageNet-normalised.
            state: State to start from (``None``: a fresh video).

        Returns:
            ``(inverse_depth (B, T, H, W), final state)``.
        """
        if state is None:
            state = self.fresh_state(clip)
        frames = []
        for t in range(clip.shape[1]):
            depth, state = self.model.step(clip[:, t], state)
            frames.append(depth)
        return torch.stack(frames, dim=1), state

    def fresh_state(self, clip: Tensor) -> Tensor:
        """The model's state before the first frame of the videos of ``clip`` (B, T, 3, H, W)."""
        size = (clip.shape[-2], clip.shape[-1])
        return self.model.init_state(clip.shape[0], clip.device, image_size=size)

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

    def _evaluate(self, batch: dict[str, Any], split: str) -> dict[str, Tensor]:
        """Stream whole videos, resize to the depth resolution, update per-dataset metrics.

        Returns:
            ``{"inverse_depth": (B, T, Hd, Wd)}`` float32 at the ground truth's resolution,
            for callbacks (:class:`flashdepth.callbacks.DepthMediaLogger`).
        """
        prediction, _ = self.stream(normalize(batch["image"]))
        prediction = self._resize(prediction, batch["inverse_depth"].shape[-2:]).float()
        for b in range(prediction.shape[0]):
            if not bool(batch["is_padding"][b]):
                self._metric(split, batch["dataset"][b]).update(
                    prediction[b], batch["inverse_depth"][b], batch["valid"][b]
                )
        return {"inverse_depth": prediction}

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

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Stream the batch's videos into the validation metrics; return the depth for callbacks."""
        return self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Log the validation metrics of every dataset and their mean, then reset them."""
        self._log_epoch_metrics("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Stream the batch's videos into the test metrics; return the depth for callbacks."""
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        """Log the test metrics of every dataset and their mean, then reset them."""
        self._log_epoch_metrics("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Stream a batch of clips, each continuing its video where its previous clip ended.

        The state is carried by :class:`~flashdepth.inference.clip_predictor.ClipPredictor`
        (one :class:`~flashdepth.inference.StreamingPredictor` per video, as in
        ``flashdepth stream``); padding clips are not run (their depth is zeros).

        Returns:
            The batch's identifiers and ``inverse_depth (B, T, H, W)`` float32 on the CPU,
            relative inverse depth (×100 ≈ 100/m for our recipes), at the depth resolution
            (``inverse_depth`` of the batch), the ``output_size`` of the batch, or else the
            model's input resolution.
        """
        videos = [
            None if bool(padding) else (dataset, scene)
            for dataset, scene, padding in zip(
                batch["dataset"], batch["scene"], batch["is_padding"], strict=True
            )
        ]
        starts = [int(start) for start in batch["start_frame"]]
        prediction = self._clips(batch["image"], videos, starts)  # (B, T, h, w) on the CPU
        if "inverse_depth" in batch:
            size = batch["inverse_depth"].shape[-2:]
        elif "output_size" in batch:
            size = tuple(int(s) for s in batch["output_size"][0])
        else:
            size = prediction.shape[-2:]
        output = {k: batch[k] for k in ("key", "dataset", "scene", "start_frame", "is_padding")}
        output["inverse_depth"] = self._resize(prediction, size)
        return output
