"""The ``flashdepth`` command line.

``flashdepth fit | validate | test | predict`` is a LightningCLI over
:class:`~flashdepth.task.FlashDepthTask` (or any LightningModule) and any
LightningDataModule, configured by YAML recipes with fully qualified class paths::

    flashdepth fit --config recipes/quickstart.yaml
    flashdepth fit -c recipes/stage1_s.yaml -c recipes/ablations/temporal_gru.yaml
    flashdepth test -c recipes/eval/sintel.yaml --ckpt_path runs/stage1_s/last.ckpt

Four more commands live beside them and are dispatched before Lightning parses
anything: ``flashdepth stream ...`` (depth for videos, :mod:`flashdepth.inference.command`),
``flashdepth data ...`` (shard conversion and inspection, :mod:`datamodules.cli`),
``flashdepth benchmark ...`` (speed, :mod:`flashdepth.benchmark`) and ``flashdepth export
...`` (TorchScript/ONNX, :mod:`flashdepth.export`).
"""

from __future__ import annotations

import sys
import warnings
from argparse import RawDescriptionHelpFormatter
from importlib import import_module
from pathlib import Path
from typing import Any

from jsonargparse import DefaultHelpFormatter
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

import flashdepth
from flashdepth.checkpoints import read_checkpoint
from flashdepth.task import model_from_config

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


class FlashDepthCLI(LightningCLI):
    """LightningCLI with a ``--version`` flag and the zoo's description.

    The task's model comes from the recipe as ``class_path``/``init_args``; components whose
    width follows the encoder (temporal, fusion) are factories the model calls with that
    width, so nothing is linked or patched. The task builds its own optimiser and schedule
    (parameter groups from the model), so there are no ``--optimizer``/``--lr_scheduler``
    options.
    """

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        """Add ``--version`` to every parser of the command line."""
        parser = super().init_parser(**kwargs)
        parser.add_argument(
            "--version", action="version", version=f"flashdepth {flashdepth.__version__}"
        )
        return parser

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse the command line, then read ``--ckpt_path`` with the zoo's checkpoint reader.

        Lightning loads that file itself (for its hyper-parameters, then to restore), and for
        a file that is not a checkpoint torch's message advises ``weights_only=False``; ours
        names the file and what to do. Tensors are memory-mapped: the check costs little.
        """
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path and Path(path).is_file():
            read_checkpoint(path, mmap=True)

    def instantiate_classes(self) -> None:
        """Build data, model and trainer; the task records its model's config."""
        with model_from_config():
            super().instantiate_classes()


def build_cli(args: list[str] | None, run: bool = True) -> FlashDepthCLI:
    """Parse ``args`` (a Lightning subcommand and its options), build and run the CLI.

    Args:
        args: Arguments after ``flashdepth``, e.g. ``["fit", "-c", "recipes/quickstart.yaml"]``;
            ``None`` reads ``sys.argv``.
        run: Run the subcommand; ``False`` only instantiates model, data and trainer.

    Returns:
        The CLI, holding ``model``, ``datamodule`` and ``trainer`` (for tests and notebooks).
    """
    return FlashDepthCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        auto_configure_optimizers=False,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "prog": "flashdepth",
            "description": _DESCRIPTION,
            "formatter_class": _HelpFormatter,
        },
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> int:
    """Run the ``flashdepth`` command line.

    Args:
        args: Command line arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status (0 on success).
    """
    first = (sys.argv[1:] if args is None else args)[:1]
    rest = sys.argv[2:] if args is None else args[1:]
    if first and first[0] in _OWN_COMMANDS:
        return import_module(_OWN_COMMANDS[first[0]]).main(rest)
    # Our training streams give exact lengths per rank and worker (see datamodules.clips)
    warnings.filterwarnings("ignore", message=r".*`IterableDataset` has `__len__` defined")
    # Frozen parts (the hybrid's teacher, the upsamplers' FlashDepth-L) stay in eval mode on purpose
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # None lets Lightning read sys.argv itself (it warns when given both)
    build_cli(args)
    return 0
