"""User mistakes with ``flashdepth fit|test|predict``: one short message, exit status 2.

Every case runs the real command line (``flashdepth.cli.main``) and checks what is printed:
the key or file at fault, the closest valid key, and no traceback unless ``--debug`` or
``FLASHDEPTH_DEBUG=1`` asks for one. All but the last three fail while parsing, before a
model is built, so they are fast; those that build one build the tiny test encoder.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from flashdepth.cli import EXIT_USAGE, main
from tests.cli_overrides import tiny_model, tiny_trainer

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
QUICKSTART = str(RECIPES / "quickstart.yaml")


def failure(args: list[str], capsys: pytest.CaptureFixture) -> str:
    """Run ``flashdepth ARGS``, check it exits with status 2, return what it printed."""
    assert main(args) == EXIT_USAGE
    return capsys.readouterr().err


def test_a_typo_on_the_command_line_names_the_closest_option(capsys) -> None:
    err = failure(["fit", "-c", QUICKSTART, "--trainer.max_step=3"], capsys)
    first = err.splitlines()[0]
    assert first == (
        "flashdepth fit: error: the command line: unknown option --trainer.max_step; "
        "did you mean --trainer.max_steps?"
    )
    assert "Traceback" not in err and "usage:" not in err
    assert len(err.splitlines()) == 2  # the message and the hint about -h and --debug


def test_a_recipe_without_its_flag_is_named(capsys) -> None:
    err = failure(["fit", "recipes/quickstart.yaml"], capsys)
    assert err.splitlines()[0] == (
        "flashdepth fit: error: the command line: unexpected argument "
        "'recipes/quickstart.yaml'; give recipes with -c/--config"
    )


def test_a_typo_in_a_recipe_names_the_file_line_and_closest_key(tmp_path, capsys) -> None:
    overlay = tmp_path / "faster.yaml"
    overlay.write_text("model:\n  init_args:\n    lr_vitt: 1.0e-4\n")
    err = failure(["fit", "-c", QUICKSTART, "-c", str(overlay)], capsys)
    assert err.splitlines()[0] == (
        f"flashdepth fit: error: {overlay}, line 3: model.init_args.lr_vitt: "
        "flashdepth.task.FlashDepthTask has no argument 'lr_vitt'; did you mean lr_vit?"
    )
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "--model.init_args.model.init_args.encoderr=vits",
            "flashdepth.models.flashdepth.FlashDepth has no argument 'encoderr'; "
            "did you mean encoder?",
        ),
        (  # a component built by a factory the model calls (Callable[[int], TemporalModule])
            "--model.init_args.model.init_args.temporal.init_args.expandd=2",
            "flashdepth.temporal.MambaTemporal has no argument 'expandd'; did you mean expand?",
        ),
        (
            "--data.init_args.batch_sise=2",
            "SyntheticClipDataModule has no argument 'batch_sise'; did you mean batch_size?",
        ),
    ],
)
def test_nested_typos_name_the_class_and_the_closest_argument(override, expected, capsys):
    err = failure(["fit", "-c", QUICKSTART, override], capsys)
    assert f"the command line ({override})" in err.splitlines()[0]
    assert err.splitlines()[0].endswith(expected)


def test_a_typo_at_the_top_of_a_recipe_is_corrected_part_by_part(tmp_path, capsys) -> None:
    overlay = tmp_path / "short.yaml"
    overlay.write_text("# fewer steps\ntraner:\n  max_steps: 3\n")
    err = failure(["fit", "-c", QUICKSTART, "-c", str(overlay)], capsys)
    assert err.splitlines()[0] == (
        f"flashdepth fit: error: {overlay}, line 2: unknown option traner.max_steps; "
        "did you mean trainer.max_steps?"
    )


def test_a_recipe_that_is_not_yaml_is_named_with_its_line(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer:\n  devices: [1, 2\n")
    err = failure(["fit", "-c", QUICKSTART, "-c", str(broken)], capsys)
    assert err.startswith(f"flashdepth fit: error: {broken} is not valid YAML: ")
    assert f'in "{broken}", line 2, column 12' in err and "Traceback" not in err


def test_a_missing_ckpt_path_says_what_to_give(tmp_path, capsys) -> None:
    err = failure(["test", "-c", QUICKSTART, f"--ckpt_path={tmp_path / 'run.ckpt'}"], capsys)
    assert err.splitlines()[0] == (
        f"flashdepth test: error: --ckpt_path {tmp_path / 'run.ckpt'}: no such file; give a "
        "checkpoint written by flashdepth fit (runs/<recipe>/checkpoints/*.ckpt), or `last` to "
        "resume the run folder's last checkpoint"
    )


def test_garbage_as_ckpt_path_is_short_and_debug_shows_the_traceback(
    tmp_path, capsys, monkeypatch
) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(random.Random(0).randbytes(4096))
    args = ["test", "-c", QUICKSTART, f"--ckpt_path={garbage}"]
    err = failure(args, capsys)
    assert f"{garbage} is not a PyTorch checkpoint" in err
    assert "Traceback" not in err and "weights_only=False" not in err
    assert "Traceback (most recent call last)" in failure([*args, "--debug"], capsys)
    monkeypatch.setenv("FLASHDEPTH_DEBUG", "1")
    assert "Traceback (most recent call last)" in failure(args, capsys)


def test_missing_shards_are_named(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the eval recipe's data/shards/sintel does not exist here
    args = ["test", "-c", str(RECIPES / "eval.yaml"), "-c", str(RECIPES / "eval" / "sintel.yaml")]
    args += [*tiny_model(), *tiny_trainer(tmp_path)]
    err = failure(args, capsys)
    assert err.startswith("flashdepth test: error: ") and "data/shards/sintel" in err
    assert "Traceback" not in err


def test_settings_the_classes_refuse_are_short_errors(capsys) -> None:
    err = failure(
        ["fit", "-c", QUICKSTART, *tiny_model(), "--model.init_args.freeze=[vitt]"], capsys
    )
    assert err.splitlines()[0] == (
        "flashdepth fit: error: the recipe's settings were refused: freeze=['vitt'] names "
        "unknown groups ['vitt']; the groups are ['vit', 'dpt', 'temporal', 'fusion']"
    )
    assert "Traceback" not in err


def test_a_gpu_recipe_on_a_machine_without_gpus_says_how_to_run_on_the_cpu(capsys) -> None:
    args = ["fit", "-c", str(RECIPES / "stage1_s.yaml"), *tiny_model(), "--model.init_weights=null"]
    args += ["--trainer.accelerator=gpu", "--trainer.devices=4096"]  # more than any machine has
    err = failure(args, capsys)
    assert err.splitlines()[0].startswith("flashdepth fit: error: the Trainer refused the recipe")
    assert "add --trainer.accelerator cpu --trainer.devices 1" in err
