r"""The ``flashdepth`` command line.

``flashdepth fit | validate | test | predict`` is a LightningCLI over
:class:`~flashdepth.task.FlashDepthTask` (or any LightningModule) and any
LightningDataModule, configured by YAML recipes with fully qualified class paths::

    flashdepth fit --config recipes/quickstart.yaml
    flashdepth fit -c recipes/quickstart.yaml --ckpt_path last      # resume after Ctrl-C
    flashdepth fit -c recipes/stage1_s.yaml -c recipes/ablations/temporal_gru.yaml
    flashdepth test -c recipes/eval.yaml -c recipes/eval/sintel.yaml \
        --ckpt_path runs/stage1_s/checkpoints/last.ckpt

**Run folders.** ``trainer.default_root_dir`` (``runs/<recipe>`` in every recipe) is the run
folder: checkpoints go to ``checkpoints/`` (every ``ModelCheckpoint`` that names no
``dirpath``) and TensorBoard logs to ``logs/<subcommand>/`` (unless the recipe names a
logger), so a second command finds the first one's files and nothing piles up in
``version_N`` folders. ``fit`` validates the untrained model first (logged at step 0;
not when resuming), keeps ``last.ckpt`` (saved atomically at the end, and after the step in
progress on Ctrl-C, which prints the command that resumes:
:class:`~flashdepth.callbacks.LastCheckpoint`), and ends with a summary
(:class:`~flashdepth.run_report.FitSummary`).

**Mistakes.** A typo'd key, a recipe that is not YAML, a missing checkpoint, video or shard,
a file that is not a checkpoint: one message naming the key or file (and the closest valid
key, :mod:`flashdepth.cli_errors`), exit status 2, a traceback only with ``--debug`` or
``FLASHDEPTH_DEBUG=1``. ``predict`` on a video that ends before its header's frame count
exits with status 1; Ctrl-C exits with 130.

Five more commands live beside them and are dispatched before Lightning parses
anything: ``flashdepth stream ...`` (depth for videos, :mod:`flashdepth.inference.command`),
``flashdepth data ...`` (shard conversion and inspection, :mod:`datamodules.cli`),
``flashdepth benchmark ...`` (speed, :mod:`flashdepth.benchmark`), ``flashdepth export
...`` (TorchScript/ONNX, :mod:`flashdepth.export`) and ``flashdepth evaluate ...`` (any
method's depth against evaluation shards, :mod:`flashdepth.evaluate`).
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
import warnings
from argparse import ArgumentError, RawDescriptionHelpFormatter
from importlib import import_module
from pathlib import Path
from typing import Any

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.model_helpers import is_overridden

import flashdepth
from datamodules.video import VideoDataModule
from flashdepth.callbacks import LastCheckpoint
from flashdepth.checkpoints import read_checkpoint
from flashdepth.cli_errors import (
    USER_ERRORS,
    UserError,
    explain_parse_error,
    explain_refused_settings,
)
from flashdepth.run_report import FitSummary, without_ckpt_path
from flashdepth.task import model_from_config

#: Exit statuses (as ``flashdepth stream``'s).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: Environment variable that, set to 1, shows tracebacks as ``--debug`` does.
DEBUG_VARIABLE = "FLASHDEPTH_DEBUG"
#: ``--ckpt_path`` values Lightning resolves itself (not file names).
_CKPT_KEYWORDS = ("last", "best", "hpc")

_DESCRIPTION = """\
FlashDepth model zoo: real-time streaming video depth.

commands:
  stream                            depth for videos, image sequences and cameras
                                    (`flashdepth stream clip.mp4 --out depth/`; `-h` for more)
  fit | validate | test | predict   train and evaluate from YAML recipes (Lightning);
                                    `flashdepth fit -h` lists every option
  data                              convert datasets to clip shards, inspect shards
                                    (`flashdepth data -h`)
  benchmark                         frames per second and memory of a model
                                    (`flashdepth benchmark -h`)
  export                            the streaming step to TorchScript or ONNX
                                    (`flashdepth export -h`)
  evaluate                          score any method's depth on evaluation shards, tables, plots
                                    (`flashdepth evaluate -h`)
"""

#: Per Lightning command: what it does, examples, and what ``--ckpt_path`` means for it.
_COMMANDS = {
    "fit": (
        "Train a model from a YAML recipe (recipes/*.yaml).",
        "flashdepth fit -c recipes/quickstart.yaml                    # CPU demo, minutes\n"
        "flashdepth fit -c recipes/quickstart.yaml --ckpt_path last   # resume after Ctrl-C\n"
        "flashdepth fit -c recipes/stage1_s.yaml -c recipes/ablations/temporal_gru.yaml",
        "resume: `last` is last.ckpt of the run folder",
    ),
    "validate": (
        "Evaluate a model on a recipe's validation data.",
        "flashdepth validate -c recipes/quickstart.yaml \\\n"
        "    --ckpt_path runs/quickstart/checkpoints/last.ckpt",
        "the weights: a checkpoint written by flashdepth fit",
    ),
    "test": (
        "Evaluate a model on a recipe's test data (recipes/eval.yaml + a recipes/eval/<dataset>"
        ".yaml overlay for the benchmarks).",
        "flashdepth test -c recipes/eval.yaml -c recipes/eval/sintel.yaml \\\n"
        "    --ckpt_path runs/stage1_s/checkpoints/last.ckpt\n"
        "flashdepth test -c recipes/eval.yaml -c recipes/eval/sintel.yaml "
        "--model.init_weights flashdepth-s",
        "the weights: a checkpoint written by flashdepth fit",
    ),
    "predict": (
        "Write depth for a recipe's prediction data or a video (`flashdepth stream` is the "
        "simpler tool for videos).",
        "flashdepth predict -c recipes/quickstart.yaml \\\n"
        "    --ckpt_path runs/quickstart/checkpoints/last.ckpt \\\n"
        "    --data datamodules.video.VideoDataModule --data.path clip.mp4 \\\n"
        "    --trainer.callbacks+=flashdepth.inference.PredictionWriter \\\n"
        "    --trainer.callbacks.output_dir depth/",
        "the weights: a checkpoint written by flashdepth fit",
    ),
}

_OPTIONS = """\
options you will use most (every option follows, Lightning's Trainer flags first):
  -c, --config FILE               a recipe or an overlay; later ones override earlier ones
  --KEY VALUE                     any setting of the merged recipe, e.g. --trainer.max_steps 100,
                                  --data.init_args.batch_size 2, --model.init_args.lr_vit 1e-5
  --ckpt_path last | FILE         {ckpt}
  --trainer.default_root_dir DIR  the run folder (the recipes: runs/<name>): checkpoints/ and
                                  logs/<command>/ (TensorBoard)
  --model.help CLASS              the arguments of a class (flashdepth.task.FlashDepthTask)
  --print_config                  the merged recipe, then exit
  --debug                         tracebacks for errors (or FLASHDEPTH_DEBUG=1)
"""

#: Commands dispatched before Lightning parses anything: name -> module with ``main(args)``.
_OWN_COMMANDS = {
    "stream": "flashdepth.inference.command",
    "data": "datamodules.cli",
    "benchmark": "flashdepth.benchmark",
    "export": "flashdepth.export",
    "evaluate": "flashdepth.evaluate.command",
}


class _HelpFormatter(RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """Keep the command list of the description as written."""


def _command_parser_kwargs(command: str) -> dict[str, Any]:
    """A one-line usage and a top summary (examples, common options) for a Lightning command.

    Lightning's own usage lists every Trainer flag (some 50 lines) before any of ours.
    """
    summary, examples, ckpt = _COMMANDS[command]
    indented = "\n".join(f"  {line}" for line in examples.splitlines())
    return {
        "usage": f"flashdepth {command} -c RECIPE.yaml [-c OVERLAY.yaml ...] "
        "[--ckpt_path last|FILE] [--KEY VALUE ...]",
        "description": f"{summary}\n\n{indented}\n\n{_OPTIONS.format(ckpt=ckpt)}",
        "formatter_class": _HelpFormatter,
    }


class FlashDepthCLI(LightningCLI):
    """LightningCLI with run folders, a step-0 validation, short errors and ``--version``.

    The task's model comes from the recipe as ``class_path``/``init_args``; components whose
    width follows the encoder (temporal, fusion) are factories the model calls with that
    width, so nothing is linked or patched. The task builds its own optimiser and schedule
    (parameter groups from the model), so there are no ``--optimizer``/``--lr_scheduler``
    options.

    Attributes:
        argv: The command line after ``flashdepth``, as given.
        exit_status: What ``flashdepth`` exits with after the command ran.
    """

    argv: list[str]
    exit_status: int = EXIT_OK

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Refuse abbreviated options and add ``--version`` to every parser of the command line.

        Abbreviations are refused because ``--trainer.max_step`` is a typo, not ``max_steps``.
        """
        kwargs.setdefault("allow_abbrev", False)
        parser = super().init_parser(**kwargs)
        parser.add_argument(
            "--version", action="version", version=f"flashdepth {flashdepth.__version__}"
        )
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse the command line, then check ``--ckpt_path``.

        A mistake becomes a :class:`UserError` naming the key and the closest valid one. The
        ``--ckpt_path`` file must exist, and is read with the zoo's checkpoint reader
        (memory-mapped: the check costs little).

        Lightning loads that file itself, and for a file that is not a checkpoint torch's
        message advises ``weights_only=False``; ours names the file and what to do.
        """
        self.argv = list(args) if isinstance(args, list) else sys.argv[1:]
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as error:
            raise UserError(explain_parse_error(str(error), self.argv)) from error
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or path in _CKPT_KEYWORDS or "://" in str(path):
            return
        if not Path(path).is_file():
            raise UserError(
                f"--ckpt_path {path}: no such file; give a checkpoint written by flashdepth "
                "fit (runs/<recipe>/checkpoints/*.ckpt), or `last` to resume the run folder's "
                "last checkpoint"
            )
        read_checkpoint(path, mmap=True)

    def instantiate_classes(self) -> None:
        """Build data, model and trainer; the task records its model's config.

        A value the classes refuse (a bad size, a GPU count this machine lacks) is a
        :class:`UserError`.
        """
        with model_from_config():
            try:
                super().instantiate_classes()
            except (ValueError, TypeError, MisconfigurationException) as error:
                by_trainer = isinstance(error, MisconfigurationException)
                raise UserError(explain_refused_settings(error, by_trainer)) from error

    def _trainer_setting(self, name: str) -> Any:
        """A ``trainer`` setting of the instantiated configuration."""
        prefix = f"{self.subcommand}." if self.subcommand else ""
        return self.config_init.get(f"{prefix}trainer.{name}")

    def resume_command(self) -> str:
        """This command line with ``--ckpt_path last`` (the one printed after Ctrl-C)."""
        return shlex.join(["flashdepth", *without_ckpt_path(self.argv), "--ckpt_path", "last"])

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The Trainer, writing into the run folder ``trainer.default_root_dir``.

        TensorBoard logs go to ``logs/<subcommand>/`` unless the recipe names a logger (or
        none); every ``ModelCheckpoint`` without a ``dirpath`` saves to ``checkpoints/``.
        ``fit`` also gets :class:`~flashdepth.callbacks.LastCheckpoint` and
        :class:`~flashdepth.run_report.FitSummary`.
        """
        root = Path(self._trainer_setting("default_root_dir") or os.getcwd())
        if self._trainer_setting("logger") in (None, True):
            version = self.subcommand or "fit"
            kwargs.setdefault(
                "logger",
                TensorBoardLogger(root, name="logs", version=version, default_hp_metric=False),
            )
        if self.subcommand == "fit":
            given = self._trainer_setting("callbacks") or []
            callbacks = list(given) if isinstance(given, list) else [given]
            callbacks += [LastCheckpoint(self.resume_command()), FitSummary(self.argv)]
            kwargs["callbacks"] = callbacks
        trainer = super().instantiate_trainer(**kwargs)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                callback.dirpath = os.path.realpath(root / "checkpoints")
        return trainer

    def before_fit(self) -> None:
        """Validate the untrained model before a fresh run, logged at step 0.

        Step 0 is where the run's validation curve then starts.

        Skipped when resuming (``--ckpt_path``), for ``fast_dev_run``, without validation
        data and with ``limit_val_batches=0``. It covers what Lightning's sanity check
        would, so that check is not repeated.
        """
        trainer = self.trainer
        source = self.datamodule if self.datamodule is not None else self.model
        resuming = self.config["fit"].get("ckpt_path")
        if resuming or trainer.fast_dev_run or not trainer.limit_val_batches:
            return
        if not is_overridden("val_dataloader", source):
            return
        trainer.validate(self.model, datamodule=self.datamodule, verbose=False)
        trainer.num_sanity_val_steps = 0

    def after_predict(self) -> None:
        """A video that ended before its header's frame count fails the command (status 1)."""
        if isinstance(self.datamodule, VideoDataModule) and self.datamodule.ended_early:
            print(f"flashdepth predict: {self.datamodule.ended_early}", file=sys.stderr)
            self.exit_status = EXIT_FAILED


def build_cli(args: list[str] | None, run: bool = True) -> FlashDepthCLI:
    """Parse ``args`` (a Lightning subcommand and its options), build and run the CLI.

    Args:
        args: Arguments after ``flashdepth``, e.g. ``["fit", "-c", "recipes/quickstart.yaml"]``;
            ``None`` reads ``sys.argv``.
        run: Run the subcommand; ``False`` only instantiates model, data and trainer.

    Returns:
        The CLI, holding ``model``, ``datamodule`` and ``trainer`` (for tests and notebooks).

    Raises:
        UserError: For a mistake in the command line or its recipes (see
            :data:`flashdepth.cli_errors.USER_ERRORS` for the others).
    """
    parser_kwargs: dict[str, Any] = {
        "prog": "flashdepth",
        "description": _DESCRIPTION,
        "formatter_class": _HelpFormatter,
        "exit_on_error": False,
    }
    parser_kwargs.update({command: _command_parser_kwargs(command) for command in _COMMANDS})
    return FlashDepthCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs=parser_kwargs,
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> int:
    """Run the ``flashdepth`` command line.

    Args:
        args: Command line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status: 0 on success, 1 when a predicted video ended early, 2 for a user
        mistake, 130 after Ctrl-C.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv[:1] and argv[0] in _OWN_COMMANDS:
        return import_module(_OWN_COMMANDS[argv[0]]).main(argv[1:])
    debug = "--debug" in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    argv = [word for word in argv if word != "--debug"]
    # Our training streams give exact lengths per rank and worker (see datamodules.clips)
    warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined")
    # Frozen parts (the hybrid's teacher, the upsamplers' FlashDepth-L) stay in eval mode on purpose
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # We hand Lightning sys.argv itself, without --debug
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
    try:
        return build_cli(argv).exit_status
    except USER_ERRORS as error:
        if debug:
            traceback.print_exc()
        command = f"flashdepth {argv[0]}" if argv and argv[0] in _COMMANDS else "flashdepth"
        print(f"{command}: error: {error}", file=sys.stderr)
        if not debug:
            print(
                f"({command} -h lists the options; --debug or {DEBUG_VARIABLE}=1 shows the "
                "traceback)",
                file=sys.stderr,
            )
        return EXIT_USAGE
    except SystemExit as stop:
        if isinstance(stop.__context__, KeyboardInterrupt):  # Lightning's graceful Ctrl-C
            return EXIT_INTERRUPTED
        raise
