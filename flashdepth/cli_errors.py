"""Short diagnoses of the mistakes a user makes with ``flashdepth fit|validate|test|predict``.

jsonargparse reports a typo'd key of a recipe deep inside a union of subtypes ("Does not
validate against any of the Union subtypes ... Option 'lr_vitt' is not accepted") after
fifty lines of usage, and argparse reports a typo'd flag as "unrecognized arguments".
:func:`explain_parse_error` turns such a message into one line that names the key, where it
was written (the recipe file and line, or the command line) and the closest valid key
(:mod:`difflib`); a recipe that is not valid YAML is named with the parser's line and column.
:func:`explain_refused_settings` keeps, of what jsonargparse says when a class refuses a
value while being built, the class's own message.

Every mistake the command line recognises as the user's is a :class:`UserError` or one of
:data:`USER_ERRORS`: ``flashdepth`` prints its message and exits with status 2, and shows the
traceback only with ``--debug`` (or ``FLASHDEPTH_DEBUG=1``).
"""

from __future__ import annotations

import difflib
import inspect
import re
from importlib import import_module
from pathlib import Path

import yaml
from lightning.pytorch import Trainer

from datamodules.video import VideoReadError
from flashdepth.checkpoints import CheckpointError
from flashdepth.task import MissingWeightsError


class UserError(Exception):
    """A mistake in the command line, a recipe or a file it names (exit status 2)."""


#: Exceptions reported as the user's mistake: one message, no traceback, exit status 2.
USER_ERRORS = (UserError, CheckpointError, FileNotFoundError, MissingWeightsError, VideoReadError)

#: Top-level keys of every Lightning subcommand besides the options of the Trainer method.
_SECTIONS = ("config", "print_config", "seed_everything", "trainer", "model", "data")
#: Trainer method arguments the command line fills itself (not options).
_FILLED = ("self", "model", "datamodule", "train_dataloaders", "val_dataloaders", "dataloaders")

_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_CLASS_PATH = re.compile(r"class_path[ =]'([^']+)'")
_PARSER_KEY = re.compile(r'Parser key "([^"]+)"')
_UNKNOWN_KEY = re.compile(r"does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.+)")


def explain_parse_error(message: str, argv: list[str]) -> str:
    """One line (or a few) saying what is wrong with the command line or its recipes.

    Args:
        message: The message of jsonargparse's ``ArgumentError``.
        argv: The command line after ``flashdepth`` (``["fit", "-c", "recipe.yaml", ...]``).

    Returns:
        The diagnosis; jsonargparse's own message, tidied, when it is not one recognised here.
    """
    subcommand = argv[0] if argv else "fit"
    nested = _NOT_ACCEPTED.search(message)
    if nested:
        # the class is the last one named before the option, or on the option's own line
        # after it (a factory: "... Option 'x' is not accepted. Got value: Namespace(class_path=")
        line_end = message.find("\n", nested.end())
        same_line = message[nested.end() : None if line_end < 0 else line_end]
        return _unknown_argument(message[: nested.start()], nested.group(1), argv, same_line)
    flat = _UNKNOWN_KEY.search(message)
    if flat:
        return _unknown_key(flat.group(1), argv, subcommand, from_command_line=False)
    unrecognized = _UNRECOGNIZED.search(message)
    if unrecognized:
        words = unrecognized.group(1).split()
        return "\n".join(
            _unknown_key(word.lstrip("-").split("=")[0], argv, subcommand, True)
            if word.startswith("--")
            else _unexpected_word(word)
            for word in words
        )
    if message.startswith("Problems parsing config"):
        return _invalid_yaml(config_files(argv)) or message.strip()
    return message.strip()


def explain_refused_settings(error: Exception, by_trainer: bool) -> str:
    """What a class said when it refused the recipe's values.

    jsonargparse wraps the message of a class built inside a union in a list of what each
    subtype said.

    Args:
        error: The exception raised while building the classes.
        by_trainer: Lightning's Trainer raised it (a ``MisconfigurationException``).

    Returns:
        The diagnosis.
    """
    message = str(error).strip()
    if "Does not validate against any of the Union subtypes" in message:
        said = [
            line.strip()[2:]
            for line in message.splitlines()
            if line.strip().startswith("- ") and "Expected a <class 'NoneType'>" not in line
        ]
        message = said[0] if said else message
    if not by_trainer:
        return f"the recipe's settings were refused: {message}"
    hint = (
        "; without GPUs, add --trainer.accelerator cpu --trainer.devices 1 "
        "--trainer.strategy auto --trainer.precision 32-true"
        if "gpu" in message.lower()
        else ""
    )
    return f"the Trainer refused the recipe's settings: {message}{hint}"


def config_files(argv: list[str]) -> list[Path]:
    """The files given with ``-c``/``--config`` in ``argv``, in order."""
    files = []
    for index, word in enumerate(argv):
        if word in ("-c", "--config") and index + 1 < len(argv):
            files.append(Path(argv[index + 1]))
        elif word.startswith("--config="):
            files.append(Path(word.split("=", 1)[1]))
    return files


def _where(name: str, argv: list[str]) -> str:
    """Where ``name`` was written: ``recipe.yaml, line N`` or ``the command line``."""
    for word in argv:
        if word.startswith("--") and re.search(rf"[-.]{re.escape(name)}(=|$)", word):
            return f"the command line ({word})"
    pattern = re.compile(rf"^\s*{re.escape(name)}\s*:")
    for path in config_files(argv):
        if path.is_file():
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if pattern.match(line):
                    return f"{path}, line {number}"
    return "the configuration"


def _arguments_of(class_path: str) -> list[str]:
    """Constructor arguments of the class at ``class_path`` (empty if it cannot be imported)."""
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(import_module(module), name)
        parameters = inspect.signature(cls).parameters.values()
    except (ImportError, AttributeError, TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in parameters if p.kind not in kinds and p.name != "self"]


def _closest(name: str, choices: list[str] | tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return found[0] if found else None


def _unknown_argument(context: str, name: str, argv: list[str], same_line: str) -> str:
    """The message for ``name``, which is not an argument of its class.

    Its class is the one named in ``same_line``, or else the innermost class named in
    ``context``.
    """
    classes = _CLASS_PATH.findall(context) + _CLASS_PATH.findall(same_line)
    keys = _PARSER_KEY.findall(context)
    key = ".init_args.".join([*keys, name]) if keys else name
    if not classes:
        return f"{_where(name, argv)}: unknown key {key}"
    arguments = _arguments_of(classes[-1])
    guess = _closest(name, arguments)
    hint = f"did you mean {guess}?" if guess else f"it takes {', '.join(arguments)}"
    return f"{_where(name, argv)}: {key}: {classes[-1]} has no argument {name!r}; {hint}"


def _unexpected_word(word: str) -> str:
    """A word that is no option (a recipe given without ``-c``, most often)."""
    hint = "; give recipes with -c/--config" if word.endswith((".yaml", ".yml")) else ""
    return f"the command line: unexpected argument {word!r}{hint}"


def _keys_below(section: str | None, subcommand: str) -> list[str]:
    """Valid keys at the top (``section=None``) or under ``trainer``; empty elsewhere."""
    if section is None:
        method = getattr(Trainer, subcommand, Trainer.fit)
        options = [p for p in inspect.signature(method).parameters if p not in _FILLED]
        return [*_SECTIONS, *options]
    if section == "trainer":
        return [p for p in inspect.signature(Trainer.__init__).parameters if p != "self"]
    return []


def _unknown_key(key: str, argv: list[str], subcommand: str, from_command_line: bool) -> str:
    """``key`` (dotted) is not an option: correct it part by part where the parts are known.

    The parts are known at the top level and among the Trainer's arguments.
    """
    parts, fixed, section, wrong = key.split("."), [], None, None
    for depth, part in enumerate(parts):
        choices = _keys_below(section, subcommand) if depth < 2 else []
        if choices and part not in choices:
            wrong = wrong or part
            part = _closest(part, choices) or part
        fixed.append(part)
        section = part
    dash = "--" if from_command_line else ""
    if from_command_line:
        where = "the command line"
    else:
        where = _where(wrong or parts[-1], argv)
    guess = ".".join(fixed)
    hint = f"; did you mean {dash}{guess}?" if guess != key else ""
    return f"{where}: unknown option {dash}{key}{hint}"


def _invalid_yaml(files: list[Path]) -> str | None:
    """The first of ``files`` that is not valid YAML, with the parser's position."""
    for path in files:
        try:
            with path.open() as stream:
                yaml.safe_load(stream)
        except yaml.YAMLError as error:
            problem = " ".join(str(error).split())
            return f"{path} is not valid YAML: {problem}"
        except OSError:
            continue
    return None
