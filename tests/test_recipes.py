"""Every recipe and overlay parses to the paper's settings and trains/tests with tiny overrides."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from flashdepth import create_model
from flashdepth.cli import build_cli, main
from flashdepth.temporal import GRUTemporal, IdentityTemporal, MambaTemporal
from tests.cli_overrides import SMALL_MODEL, tiny_data, tiny_trainer

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
STAGES = ["stage1_s", "stage1_l"]
OVERLAYS = ["temporal_gru", "temporal_none", "model_small", "model_large"]
EVALS = ["sintel", "eth3d", "waymo", "unrealstereo4k", "urbansyn"]


def recipe(name: str) -> str:
    return str(RECIPES / f"{name}.yaml")


def printed_config(capsys: pytest.CaptureFixture, args: list[str]) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


def test_every_recipe_file_is_covered() -> None:
    found = {str(p.relative_to(RECIPES).with_suffix("")) for p in RECIPES.rglob("*.yaml")}
    expected = {"quickstart", *STAGES, *(f"ablations/{o}" for o in OVERLAYS)}
    assert found == expected | {f"eval/{e}" for e in EVALS}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_recipes_hold_the_paper_settings(stage: str, capsys) -> None:
    config = printed_config(capsys, ["fit", "-c", recipe(stage)])
    task = config["model"]["init_args"]
    assert (task["lr_vit"], task["lr_dpt"], task["lr_temporal"], task["lr_fusion"]) == (
        5e-6,
        5e-5,
        1e-4,
        1e-4,
    )
    assert task["betas"] == [0.9, 0.95] and task["weight_decay"] == 0.01
    assert (task["warmup_steps"], task["warmup_start_factor"]) == (1000, 1e-4)
    size = "vits" if stage == "stage1_s" else "vitl"
    assert task["init_weights"] == f"checkpoints/depth_anything_v2_{size}.pth"
    assert task["model"]["init_args"]["encoder"] == size
    data = config["data"]["init_args"]
    assert data["clip_length"] == 5 and data["image_size"] == [518, 518]
    assert data["batch_size"] == 4 and len(data["train_shards"]) == 5
    trainer = config["trainer"]
    assert (trainer["devices"], trainer["strategy"], trainer["precision"]) == (
        8,
        "ddp",
        "bf16-mixed",
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("stage", STAGES)
def test_overlays_change_only_their_part(stage: str, overlay: str, capsys) -> None:
    base = printed_config(capsys, ["fit", "-c", recipe(stage)])
    both = printed_config(
        capsys, ["fit", "-c", recipe(stage), "-c", recipe(f"ablations/{overlay}")]
    )
    model = both["model"]["init_args"]["model"]["init_args"]
    temporal = model["temporal"]["class_path"].rsplit(".", 1)[1]
    expected_temporal = {"temporal_gru": "GRUTemporal", "temporal_none": "IdentityTemporal"}
    assert temporal == expected_temporal.get(overlay, "MambaTemporal")
    if overlay.startswith("model_"):
        assert model["encoder"] == ("vits" if overlay == "model_small" else "vitl")
    else:
        assert model["encoder"] == base["model"]["init_args"]["model"]["init_args"]["encoder"]
    assert both["data"] == base["data"]


@pytest.mark.parametrize("name", EVALS)
def test_eval_recipes_use_the_flashdepth_protocol(name: str, capsys) -> None:
    config = printed_config(capsys, ["test", "-c", recipe(f"eval/{name}")])
    task = config["model"]["init_args"]
    assert (task["metrics_protocol"], task["max_depth"]) == ("flashdepth", 70.0)
    data = config["data"]["init_args"]
    assert data["test_shards"] == f"data/shards/{name}"
    assert data["eval_long_side_max"] == 2044


@pytest.mark.parametrize(
    ("configs", "temporal"),
    [
        (["stage1_s"], MambaTemporal),
        (["stage1_l"], MambaTemporal),
        (["stage1_s", "ablations/temporal_gru"], GRUTemporal),
        (["stage1_s", "ablations/temporal_none"], IdentityTemporal),
        (["stage1_l", "ablations/model_small"], MambaTemporal),
        (["stage1_s", "ablations/model_large"], MambaTemporal),
    ],
)
def test_stage_recipes_train_with_tiny_overrides(configs, temporal, cache, tmp_path) -> None:
    small = SMALL_MODEL if "stage1_l" in configs or "ablations/model_large" in configs else []
    if configs[-1] == "ablations/model_large":
        small = [*small, "--model.model.init_args.temporal.init_args.expand=4"]
    args = [a for c in configs for a in ("-c", recipe(c))]
    cli = build_cli(
        ["fit", *args, *tiny_data(cache), *tiny_trainer(tmp_path), *small]
        + ["--model.init_weights=null", "--trainer.fast_dev_run=1"]
    )
    assert cli.trainer.global_step == 1
    assert isinstance(cli.model.model.temporal, temporal)
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))


@pytest.mark.parametrize("name", EVALS)
def test_eval_recipes_test_given_weights(name: str, cache, tmp_path) -> None:
    weights = tmp_path / "flashdepth_s.pth"
    torch.save(create_model("flashdepth-s").state_dict(), weights)
    cli = build_cli(
        ["test", "-c", recipe(f"eval/{name}"), *tiny_data(cache), *tiny_trainer(tmp_path)]
        + [f"--model.init_weights={weights}"]
    )
    metrics = cli.trainer.callback_metrics
    for key in ("abs_rel", "delta1", "boundary_f1", "flicker"):
        assert math.isfinite(float(metrics[f"test/synthetic/{key}"]))
        assert float(metrics[f"test/{key}"]) == pytest.approx(
            float(metrics[f"test/synthetic/{key}"])
        )
