"""The whole two-stage chain on a laptop: stage 1 S and L from scratch, then stage 2.

Stage 2 starts from their checkpoints; all runs go through the real command line with the real
recipes (tiny data, and the tiny test encoder in place of ViT-S and ViT-L: the recipes' stages,
temporal components and fusion stay).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flashdepth.cli import build_cli, main
from tests.cli_overrides import tiny_data, tiny_model, tiny_trainer

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def checkpointing(folder: Path) -> list[str]:
    return [
        "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
        f"--trainer.callbacks.dirpath={folder}",
        "--trainer.callbacks.save_last=true",
    ]


def fit(recipes: list[str], root: Path, cache: Path, *extra: str) -> Path:
    """Two training steps of a recipe and its overlays; returns its ``last.ckpt``."""
    configs = [word for recipe in recipes for word in ("-c", str(RECIPES / recipe))]
    args = ["fit", *configs, *tiny_data(cache), *tiny_trainer(root)]
    args += ["--trainer.max_steps=2", "--trainer.limit_val_batches=0"]
    args += ["--trainer.num_sanity_val_steps=0", *checkpointing(root / "checkpoints"), *extra]
    build_cli(args)
    return root / "checkpoints" / "last.ckpt"


def weights(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return {k[len("model.") :]: v for k, v in state.items()}


@pytest.mark.slow
def test_stage1_then_stage2_then_test(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cache = tmp_path / "synthetic"
    no_weights = "--model.init_weights=null"
    stage1_s = fit(["stage1_s.yaml"], tmp_path / "s", cache, no_weights, *tiny_model())
    stage1_l = fit(
        ["stage1_s.yaml", "stage1_l.yaml"], tmp_path / "l", cache, no_weights, *tiny_model()
    )
    sources = json.dumps({"student": str(stage1_s), "teacher": str(stage1_l)})
    stage2 = fit(
        ["stage2.yaml"],
        tmp_path / "full",
        cache,
        f"--model.init_weights={sources}",
        *tiny_model(teacher=True),
        "--model.model.init_args.teacher_resolution=28",  # the 42x56 frames are downscaled
    )

    student, teacher, full = weights(stage1_s), weights(stage1_l), weights(stage2)
    teacher_keys = [k for k in teacher if k.startswith(("pretrained.", "depth_head."))]
    assert len(teacher_keys) == len([k for k in full if k.startswith("teacher.")])
    for key in teacher_keys:  # frozen through stage 2: bit for bit
        assert torch.equal(full[f"teacher.{key}"], teacher[key]), key
    moved = [k for k in student if not torch.equal(full[k], student[k])]
    assert any(k.startswith("pretrained.") for k in moved)
    assert any(k.startswith("temporal") for k in moved)
    for block in range(4):  # zero-initialised outputs of every fusion block learned
        assert full[f"fusion.blocks.{block}.attention.proj.weight"].abs().sum() > 0
        assert full[f"fusion.blocks.{block}.mlp.2.weight"].abs().sum() > 0

    capsys.readouterr()
    test = ["test", "-c", str(RECIPES / "eval.yaml"), "-c", str(RECIPES / "eval" / "sintel.yaml")]
    test += tiny_data(cache)
    assert main([*test, *tiny_trainer(tmp_path / "test"), f"--ckpt_path={stage2}"]) == 0
    printed = capsys.readouterr().out
    for metric in ("abs_rel", "delta1", "boundary_f1", "flicker"):
        assert f"test/synthetic/{metric}" in printed and f"test/{metric}" in printed
