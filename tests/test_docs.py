r"""Every command the documentation shows still parses: a renamed flag, recipe or command fails.

Commands are what a reader copies:

- README.md: the lines of fenced ``bash``/``sh``/``shell`` blocks, the ``$`` lines of ``console``
  blocks, and in blocks without a language (printed output) the lines that start with
  ``flashdepth COMMAND``; ``pip install ...`` in inline code too.
- recipes/**/*.yaml: full-line comments that start with ``flashdepth``, and ``flashdepth ...``
  in backticks inside comments.

A trailing ``\`` continues a line, ``&&``, ``||``, ``;`` and ``|`` separate commands, ``#``
starts a comment; ``...`` stands for "the arguments above" and is dropped. Placeholders (ROOT,
clip.mp4, run.ckpt) are fine: nothing is run or opened. Each command is checked its own way:

- ``flashdepth fit|validate|test|predict`` (also through ``python -m flashdepth``, ``torchrun
  -m``, ``srun``): in-process from the repository root with ``--print_config`` appended, which
  merges the recipes and checks every key and value, then exits before ``--ckpt_path`` is opened
  or anything is built; the exit status must be 0.
- every other ``flashdepth`` command (stream, data, benchmark, export, evaluate, ``-h``) and
  ``python -m`` of our modules: the module's ``main`` runs until its argument parser returns, and
  stops there, so unknown options and missing required arguments fail. What the parsers take as
  free text is checked too: model presets, and ``data convert``'s converter, ``--split`` and
  ``--option`` keys (an upper-case word such as NAME is a placeholder).
- ``python -m`` of another module: the module can be imported; ``pip install``: every extra
  named (``.[dev]``, ``flashdepth[onnx]``) is in pyproject.toml.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonargparse
import pytest

from datamodules.cli import parse_options
from datamodules.convert import get_converter
from flashdepth.cli import main
from flashdepth.models.registry import list_models

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RECIPES = ROOT / "recipes"
#: Fence languages whose lines are commands ("" is a block without a language: printed output).
SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}
#: Tokens that separate commands on one line.
SEPARATORS = {"&&", "||", ";", "|"}
#: Arguments that stand for "as above".
ELLIPSES = {"...", "…"}
#: The Lightning commands, checked with --print_config.
LIGHTNING_COMMANDS = {"fit", "validate", "test", "predict"}
#: Packages of this project: ``python -m`` of their modules is parsed, not just found.
OUR_PACKAGES = {"flashdepth", "datamodules"}
#: Fewer commands than this (39 and 44 when the test was written, less a margin) means the
#: extraction broke, not that the documentation shrank.
MIN_README_COMMANDS, MIN_RECIPE_COMMANDS = 30, 40


@dataclass(frozen=True)
class Command:
    """A documented command and where it is written (``README.md:12``).

    Its words start with ``flashdepth``, ``python -m X`` or ``pip install``.
    """

    words: tuple[str, ...]
    source: str

    def __str__(self) -> str:
        return f"{self.source}: {shlex.join(self.words)}"


def logical_lines(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    r"""Join lines ending in ``\`` with the next; each with the number of its first line."""
    start, parts = 0, []
    for number, line in lines:
        if not parts:
            start = number
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        yield start, " ".join(part.strip() for part in parts)
        parts = []
    if parts:
        yield start, " ".join(part.strip() for part in parts)


def invocation(words: list[str]) -> tuple[str, ...] | None:
    """The command of a shell command's words, or ``None`` when it is not one we check.

    ``tensorboard ...`` is not checked; wrappers (``srun``, ``torchrun ... -m``) are dropped.
    """
    words = [word for word in words if word not in ELLIPSES]
    if words[:1] == ["flashdepth"] or words[:2] == ["pip", "install"]:
        return tuple(words)
    if "-m" in words[:-1]:
        module_at = words.index("-m") + 1
        module, arguments = words[module_at], words[module_at + 1 :]
        if module == "flashdepth":
            return ("flashdepth", *arguments)
        return ("python", "-m", module, *arguments)
    return None


def commands_in(line: str, source: str) -> list[Command]:
    """The commands of one shell line."""
    commands, words = [], []
    for word in [*shlex.split(line, comments=True), ";"]:
        if word not in SEPARATORS:
            words.append(word)
            continue
        found = invocation(words) if words else None
        if found is not None:
            commands.append(Command(found, source))
        words = []
    return commands


def readme_commands() -> list[Command]:
    """The commands of the README: its shell blocks and inline ``pip install``."""
    commands: list[Command] = []
    language: str | None = None  # inside a fence: the fence's language
    block: list[tuple[int, str]] = []
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        fence = re.match(r"\s*```(\w*)", line)
        if fence and language is None:
            language, block = fence.group(1), []
        elif fence:
            if language in SHELL_BLOCKS:
                commands += shell_block_commands(block, language)
            language = None
        elif language is not None:
            block.append((number, line))
        else:
            for span in re.findall(r"`(pip install [^`]+)`", line):
                commands += commands_in(span, f"README.md:{number}")
    return commands


def shell_block_commands(block: list[tuple[int, str]], language: str) -> list[Command]:
    """The commands of one fenced block of the README."""
    commands = []
    for number, line in logical_lines(block):
        text = line.strip()
        if language == "console":
            if not text.startswith("$ "):
                continue
            text = text[2:]
        elif language == "" and not re.match(r"flashdepth [\w-]+(\s|$)", text):
            continue  # printed output, not a command
        commands += commands_in(text, f"README.md:{number}")
    return commands


def recipe_commands() -> list[Command]:
    """The commands in the comments of every recipe."""
    commands = []
    for path in sorted(RECIPES.rglob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        comments = [
            (number, line.lstrip()[1:].strip())
            for number, line in enumerate(lines, 1)
            if line.lstrip().startswith("#")
        ]
        for number, text in logical_lines(comments):
            source = f"{path.relative_to(ROOT)}:{number}"
            shown = re.findall(r"`(flashdepth [^`]+)`", text)
            if text.startswith("flashdepth "):
                shown.insert(0, text)
            for line in shown:
                commands += commands_in(line, source)
    return commands


COMMANDS = readme_commands() + recipe_commands()


class Parsed(BaseException):
    """Raised by an argparse parser once it accepted the arguments, before the command runs.

    A BaseException, so that no ``except Exception`` of a command catches it.
    """

    def __init__(self, options: argparse.Namespace) -> None:
        super().__init__()
        self.options = options


@pytest.fixture
def stop_after_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every argparse parser (not LightningCLI's) raise :class:`Parsed` on success."""
    parse_args = argparse.ArgumentParser.parse_args

    def parse_and_stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        options = parse_args(self, *args, **kwargs)
        if isinstance(self, jsonargparse.ArgumentParser):
            return options
        raise Parsed(options)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_and_stop)


def check_free_text(words: tuple[str, ...], options: argparse.Namespace) -> None:
    """What a parser took as free text names something that exists."""
    command = words[1] if words[0] == "flashdepth" else None
    if command in ("stream", "export"):
        assert options.model in list_models(), f"no model preset {options.model!r}"
    if command == "data" and options.command == "convert" and options.name:
        if options.name.isupper():  # a placeholder: NAME
            return
        converter = get_converter(options.name)
        parse_options(options.option, converter)
        assert options.split in (None, *converter.splits), (
            f"{options.name} has no split {options.split!r}; it has {converter.splits}"
        )


def run_parsing(words: tuple[str, ...]) -> argparse.Namespace | None:
    """Run a command until its parser returns; its options, or ``None`` after ``--help``.

    ``None`` when it exited 0 without them (``--help``); any other exit fails.
    """
    try:
        if words[0] == "flashdepth":
            status = main(list(words[1:]))
        else:
            status = importlib.import_module(words[2]).main(list(words[3:]))
    except Parsed as parsed:
        return parsed.options
    except SystemExit as stop:
        status = stop.code
    assert status in (0, None), f"exit status {status}"
    return None


def check(words: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    """Check one command (see the module docstring); AssertionError or ValueError if stale."""
    if words[0] == "pip":
        check_pip_extras(words[2:])
        return
    if words[0] == "python" and words[2].split(".")[0] not in OUR_PACKAGES:
        assert importlib.util.find_spec(words[2]) is not None, f"no module {words[2]}"
        return
    lightning = words[0] == "flashdepth" and words[1:2] and words[1] in LIGHTNING_COMMANDS
    # recipes are named from the repository root; anything else that slipped through the
    # parser and ran would write into a scratch folder
    monkeypatch.chdir(ROOT if lightning else scratch)
    options = run_parsing((*words, "--print_config") if lightning else words)
    if options is not None:
        check_free_text(words, options)


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_documented_command_parses(
    command: Command,
    stop_after_parsing: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    try:
        check(command.words, monkeypatch, tmp_path)
    except (AssertionError, ValueError) as error:
        pytest.fail(f"{command}\n{error}\n{capsys.readouterr().err}")


@pytest.mark.parametrize(
    "line",
    [
        "flashdepth fit -c recipes/stage1_xl.yaml",  # no such recipe
        "flashdepth fit -c recipes/quickstart.yaml --trainer.max_step 3",  # a renamed key
        "flashdepth test -c recipes/eval/sintel.yaml",  # an overlay without its recipe
        "flashdepth train -c recipes/quickstart.yaml",  # no such command
        "flashdepth stream clip.mp4 --out depth/ --codec h264",  # an unknown option
        "flashdepth stream clip.mp4 --model flashdepth-xl --out depth/",  # no such preset
        "flashdepth export flashdepth-s --out x.onnx",  # a required option missing
        "flashdepth data convert sintell --root ROOT --out OUT",  # no such converter
        "flashdepth data convert sintel ... --option pass=final",  # no such converter option
        "flashdepth data convert kitti --root ROOT --out OUT --split test",  # no such split
        "python -m datamodules.benchmark --fps 3",  # an unknown option of our module
        "python -m no_such_module",
        "pip install -e '.[docs]'",  # no such extra
    ],
)
def test_a_stale_command_fails(
    line: str,
    stop_after_parsing: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    (command,) = commands_in(line, "test")
    with pytest.raises((AssertionError, ValueError)):
        check(command.words, monkeypatch, tmp_path)
    capsys.readouterr()


def check_pip_extras(arguments: tuple[str, ...]) -> None:
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras = set(pyproject["project"]["optional-dependencies"])
    for argument in arguments:
        named = re.fullmatch(r"(?:\.|flashdepth)\[([\w,-]+)\]", argument)
        if named:
            missing = set(named.group(1).split(",")) - extras
            assert not missing, f"pip install {argument}: pyproject.toml has no extra {missing}"


def test_the_extraction_finds_the_documented_commands() -> None:
    sources = [command.source for command in COMMANDS]
    readme = [source for source in sources if source.startswith("README.md:")]
    assert len(readme) >= MIN_README_COMMANDS
    assert len(sources) - len(readme) >= MIN_RECIPE_COMMANDS
    # every recipe and overlay says how to run it
    every_recipe = {str(path.relative_to(ROOT)) for path in RECIPES.rglob("*.yaml")}
    assert every_recipe <= {source.rsplit(":", 1)[0] for source in sources}
