"""Every recipe and overlay parses to the paper's settings and trains/tests with tiny overrides.

Full recipes are ``recipes/*.yaml``; an overlay (``recipes/stage1_l.yaml``, ``recipes/ablations/``,
``recipes/eval/``) holds only what differs from the recipe it is stacked on with a later ``-c``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from flashdepth.cli import build_cli, main
from flashdepth.temporal import GRUTemporal, IdentityTemporal, MambaTemporal
from flashdepth.transforms import resize_shape
from tests.cli_overrides import tiny_data, tiny_model, tiny_preset, tiny_trainer

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
#: Stage 1 per model: the recipe and the overlays stacked on it.
STAGES = {"stage1_s": ["stage1_s"], "stage1_l": ["stage1_s", "stage1_l"]}
OVERLAYS = ["temporal_gru", "temporal_none"]
STAGE2_OVERLAYS = ["fusion_unet", "fusion_dagf", "fusion_blocks2", "teacher518"]
EVALS = ["sintel", "eth3d", "waymo", "unrealstereo4k", "urbansyn"]
#: Video Depth Anything's benchmarks: depth cap (m), stored frame size (H, W) and the network
#: input at VDA's resolution (short side 518; 280 for KITTI's frames, wider than 16:9).
VDA_EVALS = {
    "kitti": (80.0, (375, 1242), (280, 938)),
    "bonn": (10.0, (480, 640), (518, 700)),
    "scannet": (10.0, (464, 618), (518, 700)),
    "nyuv2": (10.0, (426, 560), (518, 686)),
}
#: The paper's test resolutions (H, W) and each dataset's native size.
PAPER_RESOLUTIONS = {
    "eth3d": ((4032, 6048), (1274, 1918)),
    "waymo": ((1280, 1920), (1274, 1918)),
    "sintel": ((436, 1024), (434, 1022)),
    "urbansyn": ((1024, 2048), (1022, 2044)),
    "unrealstereo4k": ((2160, 3840), (1148, 2044)),
}
#: The hybrid (student and teacher) and the upsamplers' FlashDepth-L at the tiny test size.
TINY_HYBRID = tiny_model(teacher=True)
TINY_UPSAMPLER = [
    *tiny_model(),
    "--model.model.init_args.resolution=28",
    "--data.image_size=[56, 56]",  # the UNet needs sides divisible by 4
    "--data.eval_short_side=56",
]


def recipe(name: str) -> str:
    return str(RECIPES / f"{name}.yaml")


def stacked(*names: str) -> list[str]:
    """``-c`` options for recipes and overlays, later ones overriding earlier ones."""
    return [option for name in names for option in ("-c", recipe(name))]


def evaluation(name: str) -> list[str]:
    """The evaluation recipe with one dataset's overlay."""
    return stacked("eval", f"eval/{name}")


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
    expected = {"quickstart", *STAGES, "stage2", "eval", *(f"ablations/{o}" for o in OVERLAYS)}
    expected |= {f"ablations/{o}" for o in STAGE2_OVERLAYS} | {"eval/model_full"}
    assert found == expected | {f"eval/{e}" for e in [*EVALS, *VDA_EVALS]}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_recipes_hold_the_paper_settings(stage: str, capsys) -> None:
    config = printed_config(capsys, ["fit", *stacked(*STAGES[stage])])
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


def test_stage1_l_changes_only_the_model_its_weights_and_the_run_folder(capsys) -> None:
    small = printed_config(capsys, ["fit", *stacked(*STAGES["stage1_s"])])
    large = printed_config(capsys, ["fit", *stacked(*STAGES["stage1_l"])])
    model = large["model"]["init_args"]["model"]["init_args"]
    assert (model["encoder"], model["stage"]) == ("vitl", 3)
    temporal = model["temporal"]["init_args"]
    assert (temporal["expand"], temporal["headdim"]) == (2, 64)
    for config in (small, large):
        del config["model"]["init_args"]["model"], config["model"]["init_args"]["init_weights"]
        del config["trainer"]["default_root_dir"]
    assert large == small


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("stage", STAGES)
def test_overlays_change_only_their_part(stage: str, overlay: str, capsys) -> None:
    base = printed_config(capsys, ["fit", *stacked(*STAGES[stage])])
    both = printed_config(capsys, ["fit", *stacked(*STAGES[stage], f"ablations/{overlay}")])
    model = both["model"]["init_args"]["model"]["init_args"]
    temporal = model["temporal"]["class_path"].rsplit(".", 1)[1]
    expected_temporal = {"temporal_gru": "GRUTemporal", "temporal_none": "IdentityTemporal"}
    assert temporal == expected_temporal[overlay]
    assert model["encoder"] == base["model"]["init_args"]["model"]["init_args"]["encoder"]
    assert both["data"] == base["data"]
    assert both["trainer"]["default_root_dir"] == f"runs/ablation_{overlay}"


@pytest.mark.parametrize("name", EVALS)
def test_eval_recipes_use_the_flashdepth_protocol(name: str, capsys) -> None:
    config = printed_config(capsys, ["test", *evaluation(name)])
    task = config["model"]["init_args"]
    assert (task["metrics_protocol"], task["max_depth"]) == ("flashdepth", 70.0)
    data = config["data"]["init_args"]
    assert data["test_shards"] == f"data/shards/{name}"
    native, paper = PAPER_RESOLUTIONS[name]
    size = resize_shape(*native, data["eval_short_side"], data["eval_long_side_max"])
    assert size == paper


@pytest.mark.parametrize("name", VDA_EVALS)
def test_vda_eval_recipes_use_the_vda_protocol(name: str, capsys) -> None:
    config = printed_config(capsys, ["test", *evaluation(name)])
    task = config["model"]["init_args"]
    cap, native, network = VDA_EVALS[name]
    assert (task["metrics_protocol"], task["max_depth"]) == ("vda", cap)
    data = config["data"]["init_args"]
    assert data["test_shards"] == f"data/shards/{name}"
    assert resize_shape(*native, data["eval_short_side"], data["eval_long_side_max"]) == network


#: What a dataset overlay may set on top of recipes/eval.yaml.
DATASET_KEYS = {
    "trainer": {"default_root_dir"},
    "model": {"metrics_protocol", "max_depth"},
    "data": {"test_shards", "eval_short_side", "eval_long_side_max"},
}


@pytest.mark.parametrize("name", [*EVALS, *VDA_EVALS])
def test_eval_overlays_change_only_the_dataset_settings(name: str, capsys) -> None:
    base = printed_config(capsys, ["test", "-c", recipe("eval")])
    both = printed_config(capsys, ["test", *evaluation(name)])
    assert both["trainer"]["default_root_dir"] == f"runs/eval_{name}"
    for config in (base, both):
        for group, keys in DATASET_KEYS.items():
            settings = config[group] if group == "trainer" else config[group]["init_args"]
            for key in keys:
                del settings[key]
    assert both == base


@pytest.mark.parametrize(
    ("model_overlay", "model_class", "encoder"),
    [
        ("stage1_l", "flashdepth.models.flashdepth.FlashDepth", "vitl"),
        ("eval/model_full", "flashdepth.models.hybrid.FlashDepthHybrid", "vits"),
    ],
)
def test_model_overlays_stack_before_a_dataset_overlay(
    model_overlay: str, model_class: str, encoder: str, capsys
) -> None:
    config = printed_config(
        capsys, ["test", *stacked("eval", model_overlay, "eval/sintel"), "--model.init_weights=w"]
    )
    model = config["model"]["init_args"]["model"]
    assert (model["class_path"], model["init_args"]["encoder"]) == (model_class, encoder)
    assert config["model"]["init_args"]["init_weights"] == "w"
    assert config["trainer"]["default_root_dir"] == "runs/eval_sintel"
    assert config["data"]["init_args"]["test_shards"] == "data/shards/sintel"


def test_stage2_recipe_holds_the_released_settings(capsys) -> None:
    config = printed_config(capsys, ["fit", "--config", recipe("stage2")])
    task = config["model"]["init_args"]
    model = task["model"]
    assert model["class_path"] == "flashdepth.models.hybrid.FlashDepthHybrid"
    hybrid = model["init_args"]
    assert (hybrid["encoder"], hybrid["stage"], hybrid["teacher_encoder"]) == ("vits", 1, "vitl")
    assert (hybrid["teacher_resolution"], hybrid["num_blocks"]) == (490, 4)
    assert hybrid["temporal"]["init_args"]["expand"] == 4
    assert task["init_weights"] == {
        "student": "runs/stage1_s/checkpoints/last.ckpt",
        "teacher": "runs/stage1_l/checkpoints/last.ckpt",
    }
    lrs = (task["lr_vit"], task["lr_dpt"], task["lr_temporal"], task["lr_fusion"])
    assert lrs == (5e-6, 5e-5, 1e-4, 1e-4) and task["grad_checkpointing"] is True
    data = config["data"]["init_args"]
    assert data["train_shards"] == ["data/shards/mvs_synth", "data/shards/spring"]
    assert data["train_strides"] == [[2], [2]] and data["clip_length"] == 5
    assert data["image_size"] == [1078, 1918] and data["batch_size"] == 4
    trainer = config["trainer"]
    assert (trainer["devices"], trainer["strategy"], trainer["precision"]) == (
        8,
        "ddp",
        "bf16-mixed",
    )
    assert trainer["max_steps"] == 60000
    # the stage-1 recipes write where stage 2 reads: the command line puts every
    # ModelCheckpoint without a dirpath into <default_root_dir>/checkpoints (tests/test_resume.py)
    for stage, recipes in STAGES.items():
        trainer = printed_config(capsys, ["fit", *stacked(*recipes)])["trainer"]
        assert trainer["default_root_dir"] == f"runs/{stage}"
        checkpoints = [c for c in trainer["callbacks"] if "ModelCheckpoint" in c["class_path"]]
        assert [c["init_args"]["dirpath"] for c in checkpoints] == [None, None]
        assert [c["init_args"]["save_last"] for c in checkpoints] == [True, None]
        assert checkpoints[1]["init_args"]["monitor"] == "val/delta1"


@pytest.mark.parametrize("overlay", STAGE2_OVERLAYS)
def test_stage2_overlays_change_only_their_part(overlay: str, capsys) -> None:
    base = printed_config(capsys, ["fit", "-c", recipe("stage2")])
    both = printed_config(
        capsys, ["fit", "-c", recipe("stage2"), "-c", recipe(f"ablations/{overlay}")]
    )
    model = both["model"]["init_args"]["model"]
    if overlay.startswith("fusion_") and overlay != "fusion_blocks2":
        assert model["class_path"] == "flashdepth.models.upsampled.LowResolutionUpsampler"
        upsampler = {"fusion_unet": "UNetUpsampler", "fusion_dagf": "DAGFUpsampler"}[overlay]
        assert model["init_args"]["upsampler"]["class_path"].endswith(upsampler)
        assert model["init_args"]["encoder"] == "vitl" and model["init_args"]["resolution"] == 518
        assert both["model"]["init_args"]["init_weights"] == {
            "low_res": "runs/stage1_l/checkpoints/last.ckpt"
        }
    else:
        changed = {"fusion_blocks2": ("num_blocks", 2), "teacher518": ("teacher_resolution", 518)}
        key, value = changed[overlay]
        assert model["init_args"][key] == value
        rest = {k: v for k, v in model["init_args"].items() if k != key}
        assert rest == {
            k: v for k, v in base["model"]["init_args"]["model"]["init_args"].items() if k != key
        }
    assert both["data"] == base["data"]
    # the overlay's own run folder, stage 2's callbacks (their checkpoints follow the folder)
    assert both["trainer"]["default_root_dir"] == f"runs/ablation_{overlay}"
    assert both["trainer"]["callbacks"] == base["trainer"]["callbacks"]


@pytest.mark.parametrize("overlay", [None, *STAGE2_OVERLAYS])
def test_stage2_recipes_train_with_tiny_overrides(overlay, cache, tmp_path) -> None:
    configs = ["-c", recipe("stage2")]
    tiny = TINY_HYBRID
    if overlay is not None:
        configs += ["-c", recipe(f"ablations/{overlay}")]
        if overlay in ("fusion_unet", "fusion_dagf"):
            tiny = TINY_UPSAMPLER
    if overlay != "teacher518":
        tiny = (
            [*tiny, "--model.model.init_args.teacher_resolution=28"]
            if tiny is TINY_HYBRID
            else tiny
        )
    cli = build_cli(
        ["fit", *configs, *tiny_data(cache), *tiny_trainer(tmp_path), *tiny]
        + ["--model.init_weights=null", "--trainer.fast_dev_run=1"]
    )
    assert cli.trainer.global_step == 1
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))
    groups = {g["name"] for g in cli.trainer.optimizers[0].param_groups}
    expected = (
        {"fusion"}
        if overlay in ("fusion_unet", "fusion_dagf")
        else {"vit", "dpt", "temporal", "fusion"}
    )
    assert groups == expected


@pytest.mark.parametrize(
    ("configs", "temporal"),
    [
        (["stage1_s"], MambaTemporal),
        (["stage1_s", "stage1_l"], MambaTemporal),
        (["stage1_s", "ablations/temporal_gru"], GRUTemporal),
        (["stage1_s", "ablations/temporal_none"], IdentityTemporal),
        (["stage1_s", "stage1_l", "ablations/temporal_gru"], GRUTemporal),
    ],
)
def test_stage_recipes_train_with_tiny_overrides(configs, temporal, cache, tmp_path) -> None:
    cli = build_cli(
        ["fit", *stacked(*configs), *tiny_data(cache), *tiny_trainer(tmp_path), *tiny_model()]
        + ["--model.init_weights=null", "--trainer.fast_dev_run=1"]
    )
    assert cli.trainer.global_step == 1
    assert isinstance(cli.model.model.temporal, temporal)
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))


@pytest.mark.parametrize("name", [*EVALS, *VDA_EVALS])
def test_eval_recipes_test_given_weights(name: str, cache, tmp_path) -> None:
    weights = tmp_path / "flashdepth_s.pth"
    torch.save(tiny_preset("flashdepth-s").state_dict(), weights)
    cli = build_cli(
        ["test", *evaluation(name), *tiny_data(cache), *tiny_trainer(tmp_path), *tiny_model()]
        + [f"--model.init_weights={weights}"]
    )
    metrics = cli.trainer.callback_metrics
    for key in ("abs_rel", "delta1", "boundary_f1", "flicker"):
        assert math.isfinite(float(metrics[f"test/synthetic/{key}"]))
        assert float(metrics[f"test/{key}"]) == pytest.approx(
            float(metrics[f"test/synthetic/{key}"])
        )
