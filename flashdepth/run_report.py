"""What ``flashdepth fit`` prints when a run ends: metrics, checkpoints and the next commands.

:class:`FitSummary` is a callback that remembers the mean validation metrics of every
validation of the run (the untrained model's at step 0 included, when the command line
validated before training) and, when ``fit`` ends, prints one short report::

    flashdepth fit: step 240 of 240 done
    validation        step  delta1  abs_rel  boundary_f1  flicker
      untrained          0  0.2410   0.5410       0.0510   0.0310
      best (delta1)    240  0.3890   0.3970       ...
      final            240  0.3890   0.3970       ...
    checkpoints
      best  runs/quickstart/checkpoints/best-step=240.ckpt
      last  runs/quickstart/checkpoints/last.ckpt
    next
      flashdepth test -c recipes/quickstart.yaml --ckpt_path BEST
      flashdepth stream VIDEO --model flashdepth-s --weights BEST --out depth/

(``BEST`` stands for the best checkpoint's path, written out in full.)

``flashdepth stream`` builds a named preset; :func:`matching_preset` finds the preset whose
architecture (tensor names and shapes, and the constructor arguments modules keep, such as
the temporal module's insertion stage) is exactly the trained model's. A model that no
preset matches (another temporal width or stage, a custom ``class_path``) gets the
``flashdepth predict`` command, which rebuilds the model from the checkpoint.
"""

from __future__ import annotations

import inspect
import re
import shlex
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from flashdepth.callbacks import display_path
from flashdepth.models.registry import create_model, list_models
from flashdepth.task import FlashDepthTask

#: Metrics shown first, in this order; any other logged ``val/<name>`` follows by name.
LEADING_METRICS = ("delta1", "abs_rel")
#: Names Lightning resolves ``--ckpt_path last`` among (``last.ckpt``, ``last-v1.ckpt``).
_LAST_NAME = re.compile(r"^last(-v?\d+)?\.ckpt$")

#: What identifies an architecture: tensor names and shapes, and the constructor arguments
#: each module keeps as a plain attribute (``FlashDepth.stage``, ``Mamba2.headdim``, ...).
Architecture = frozenset[tuple[str, Any]]


@dataclass(frozen=True)
class PresetMatch:
    """How a model compares with the presets of :func:`flashdepth.list_models`.

    Attributes:
        exact: The preset with exactly the model's architecture (:func:`architecture`;
            ``None``: none).
        closest: The preset whose architecture differs least from the model's.
        differing: Items of :func:`architecture` (tensors, kept constructor arguments) that
            differ between the model and ``closest``.
        same_class: Whether a preset builds the model's class at all.
    """

    exact: str | None
    closest: str
    differing: int
    same_class: bool


@lru_cache(maxsize=1)
def _preset_architectures() -> dict[str, tuple[type, Architecture]]:
    """Class and architecture of every preset; computed once per process.

    The presets are built on the meta device (no memory, no initialisation cost).
    """
    architectures = {}
    for name in list_models():
        with torch.device("meta"):
            model = create_model(name)
        architectures[name] = (type(model), architecture(model))
    return architectures


@cache
def _constructor_arguments(cls: type) -> frozenset[str]:
    return frozenset(inspect.signature(cls).parameters)


def architecture(model: nn.Module) -> Architecture:
    """What makes two models the same network.

    That is every tensor's name and shape, and every constructor argument a module keeps as
    a plain value (the insertion stage of a temporal module changes no tensor, but it
    changes the network).
    """
    items: set[tuple[str, Any]] = {
        (key, tuple(value.shape)) for key, value in model.state_dict().items()
    }
    for path, module in model.named_modules():
        for name in _constructor_arguments(type(module)):
            value = vars(module).get(name)
            if isinstance(value, bool | int | float | str):
                items.add((f"{path}:{name}", value))
    return frozenset(items)


def matching_preset(model: nn.Module) -> PresetMatch:
    """The preset that ``flashdepth stream --model`` should build to load ``model``'s weights.

    Args:
        model: A trained network (the task's ``model``).

    Returns:
        The exact match if there is one, and the closest preset in any case.
    """
    mine = architecture(model)
    presets = _preset_architectures()
    differing = {name: len(mine ^ theirs) for name, (_, theirs) in presets.items()}
    closest = min(differing, key=lambda name: (differing[name], name))
    same_class = any(cls is type(model) for cls, _ in presets.values())
    exact = closest if differing[closest] == 0 else None
    return PresetMatch(exact, closest, differing[closest], same_class)


def without_ckpt_path(argv: list[str]) -> list[str]:
    """``argv`` without its ``--ckpt_path`` option (``--ckpt_path X`` or ``--ckpt_path=X``)."""
    kept, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--ckpt_path":
            skip = True
        elif not word.startswith("--ckpt_path="):
            kept.append(word)
    return kept


class FitSummary(Callback):
    """Print the report above when ``fit`` ends (global rank zero; not for ``fast_dev_run``).

    Args:
        command: The ``fit`` command line after ``flashdepth`` (``["fit", "-c", ...]``); the
            next commands repeat its options with ``test``/``predict`` (``None``: a generic
            ``-c RECIPE``).
    """

    def __init__(self, command: list[str] | None = None) -> None:
        super().__init__()
        self.command = list(command) if command is not None else None
        self.history: list[tuple[int, dict[str, float]]] = []
        self.text = ""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Remember the mean metrics (``val/<metric>``) of a validation (not the sanity check)."""
        if trainer.sanity_checking:
            return
        metrics = {
            key.split("/", 1)[1]: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("val/") and key.count("/") == 1
        }
        if metrics:
            self.history = [(s, m) for s, m in self.history if s != trainer.global_step]
            self.history.append((trainer.global_step, metrics))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Write the report (printed at teardown, once the progress bar has stopped)."""
        if trainer.is_global_zero and not trainer.fast_dev_run:
            self.text = self.report(trainer, pl_module)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Print the report of a ``fit`` that ended normally."""
        if stage == "fit" and self.text:
            print(self.text, flush=True)

    def report(self, trainer: Trainer, pl_module: LightningModule) -> str:
        """The report's text."""
        lines = [f"\nflashdepth fit: step {trainer.global_step} of {trainer.max_steps} done"]
        if trainer.max_steps < 0:
            lines[0] = f"\nflashdepth fit: {trainer.current_epoch} epoch(s) done"
        last, best, monitor = _checkpoints(trainer)
        lines += self._metrics_table(monitor)
        lines.append("checkpoints")
        for kind, path in (("best", best), ("last", last)):
            if path:
                lines.append(f"  {kind:<5} {display_path(path)}")
        if not (best or last):
            lines.append("  none (no ModelCheckpoint: checkpointing is off)")
        weights = best or last
        if weights:
            lines.append("next")
            model = pl_module.model if isinstance(pl_module, FlashDepthTask) else pl_module
            options = without_ckpt_path(self.command[1:]) if self.command else ["-c", "RECIPE"]
            commands = next_commands(options, model, display_path(weights))
            lines += [f"  {line}" for line in commands]
        return "\n".join(lines)

    def _metrics_table(self, monitor: tuple[str, str] | None) -> list[str]:
        """Rows ``untrained`` (step 0), ``best`` (by the checkpoint's monitor), ``final``."""
        if not self.history:
            return ["validation: none ran (no validation data, or limit_val_batches=0)"]
        names = sorted({name for _, metrics in self.history for name in metrics})
        names = [n for n in LEADING_METRICS if n in names] + [
            n for n in names if n not in LEADING_METRICS
        ]
        rows = []
        if self.history[0][0] == 0:
            rows.append(("untrained", *self.history[0]))
        trained = [entry for entry in self.history if entry[0] > 0]
        if monitor is not None and monitor[0].startswith("val/") and trained:
            key, mode = monitor[0].removeprefix("val/"), monitor[1]
            scored = [entry for entry in trained if key in entry[1]]
            if scored:
                pick = max if mode == "max" else min
                rows.append((f"best ({key})", *pick(scored, key=lambda entry: entry[1][key])))
        rows.append(("final", *self.history[-1]))
        width = max(len(label) for label, _, _ in rows)
        columns = {name: max(7, len(name)) for name in names}
        header = "".join(f"  {name:>{size}}" for name, size in columns.items())
        table = [f"{'validation':<{width + 2}}  {'step':>6}{header}"]
        for label, step, metrics in rows:
            cells = "".join(
                f"  {metrics[name]:>{size}.4f}" if name in metrics else f"  {'-':>{size}}"
                for name, size in columns.items()
            )
            table.append(f"  {label:<{width}}  {step:>6}{cells}")
        return table


def next_commands(options: list[str], model: nn.Module, weights: str) -> list[str]:
    """``flashdepth test`` with the run's options, and a command that gives depth for a video.

    Args:
        options: The ``fit`` options (recipes, overrides) without ``--ckpt_path``.
        model: The trained network.
        weights: The checkpoint to use.

    Returns:
        Command lines; ``flashdepth stream`` when a preset has exactly ``model``'s
        architecture, else a comment saying why not and ``flashdepth predict`` on a video.
    """
    commands = [shlex.join(["flashdepth", "test", *options, "--ckpt_path", weights])]
    match = matching_preset(model)
    if match.exact is not None:
        commands.append(
            f"flashdepth stream VIDEO --model {match.exact} --weights {shlex.quote(weights)}"
            " --out depth/"
        )
        return commands
    why = (
        f"no preset has this architecture (closest: {match.closest}, "
        f"{match.differing} tensors or settings differ)"
        if match.same_class
        else f"{type(model).__name__} is not a preset model (custom class_path)"
    )
    predict = ["flashdepth", "predict", *options, "--ckpt_path", weights]
    predict += ["--data", "datamodules.video.VideoDataModule", "--data.path", "VIDEO"]
    predict += ["--trainer.callbacks+=flashdepth.inference.PredictionWriter"]
    predict += ["--trainer.callbacks.output_dir", "depth/", "--return_predictions", "false"]
    commands.append(f"# {why}: flashdepth stream cannot build it; predict rebuilds it")
    commands.append(shlex.join(predict))
    return commands


def _checkpoints(trainer: Trainer) -> tuple[str, str, tuple[str, str] | None]:
    """``(last, best, (monitor, mode))`` of the trainer's ``ModelCheckpoint`` callbacks.

    ``last`` is what ``--ckpt_path last`` resumes: the newest ``last*.ckpt`` in their folders;
    ``best`` is the best file of the first callback with a monitor.
    """
    checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
    folders = {Path(c.dirpath) for c in checkpoints if c.dirpath and Path(c.dirpath).is_dir()}
    lasts = [p for folder in folders for p in folder.iterdir() if _LAST_NAME.match(p.name)]
    last = str(max(lasts, key=lambda p: p.stat().st_mtime)) if lasts else ""
    monitored = next((c for c in checkpoints if c.monitor), None)
    if monitored is None:
        return last, "", None
    return last, monitored.best_model_path, (monitored.monitor, monitored.mode)
