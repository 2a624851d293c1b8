"""Tests of flashdepth.task: optimiser groups, warm-up, weights, evaluation, streaming.

The presets are built at the tiny test size (``vitt``): the task, not the architecture, is
under test.
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import DataLoader

from flashdepth.metrics import VideoDepthMetrics
from flashdepth.task import FlashDepthTask
from flashdepth.transforms import normalize
from tests.cli_overrides import tiny_preset

H, W = 42, 56


def batch(
    datasets: list[str], frames: int = 3, padding: list[bool] | None = None, start: int = 0
) -> dict:
    """A batch in the data contract; depth at a different resolution than the image."""
    b = len(datasets)
    generator = torch.Generator().manual_seed(start + 17 * b)
    return {
        "image": torch.rand(b, frames, 3, H, W, generator=generator),
        "inverse_depth": torch.rand(b, frames, 30, 40, generator=generator) + 0.05,
        "valid": torch.ones(b, frames, 30, 40, dtype=torch.bool),
        "key": [f"{d}_{i}" for i, d in enumerate(datasets)],
        "dataset": datasets,
        "scene": [f"scene{i}" for i in range(b)],
        "start_frame": torch.full((b,), start),
        "is_padding": torch.tensor(padding or [False] * b),
        "skipped": torch.zeros(b, dtype=torch.long),
    }


def trainer(tmp_path, **kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def loader(*batches: dict) -> DataLoader:
    return DataLoader(list(batches), batch_size=None)


def test_parameter_groups_cover_every_parameter_with_its_learning_rate() -> None:
    task = FlashDepthTask(tiny_preset("flashdepth-s"), lr_vit=1.0, lr_dpt=2.0, lr_temporal=3.0)
    optimizer = task.configure_optimizers()["optimizer"]
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert {n: g["initial_lr"] for n, g in by_name.items()} == {
        "vit": 1.0,
        "dpt": 2.0,
        "temporal": 3.0,
    }
    assert by_name["vit"]["lr"] == pytest.approx(1e-4)  # warm-up factor at step 0
    assert optimizer.defaults["betas"] == (0.9, 0.95) and optimizer.defaults["weight_decay"] == 0.01
    grouped = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert grouped == sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    frozen = [n for n, p in task.model.named_parameters() if not p.requires_grad]
    # only the block DAv2 never runs (path_4 has no skip input) is frozen
    assert {n.rsplit(".", 2)[0] for n in frozen} == {"depth_head.scratch.refinenet4.resConfUnit1"}
    temporal = {id(p) for p in by_name["temporal"]["params"]}
    assert id(task.model.temporal_out[1].weight) in temporal
    assert id(task.model.pretrained.blocks[0].attn.qkv.weight) in {
        id(p) for p in by_name["vit"]["params"]
    }


def test_a_frozen_teacher_is_in_no_group_and_fusion_has_its_own() -> None:
    with torch.device("meta"):
        model = tiny_preset("flashdepth-full")
    task = FlashDepthTask(model, lr_fusion=7.0)
    optimizer = task.configure_optimizers()["optimizer"]
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert set(by_name) == {"vit", "dpt", "temporal", "fusion"}
    assert by_name["fusion"]["initial_lr"] == 7.0
    assert {id(p) for p in by_name["fusion"]["params"]} == {
        id(p) for p in model.fusion.parameters()
    }
    grouped = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not grouped & {id(p) for p in model.teacher.parameters()}


def test_freeze_removes_a_group_from_training() -> None:
    task = FlashDepthTask(tiny_preset("flashdepth-s"), freeze=["vit"])
    assert not any(p.requires_grad for p in task.model.pretrained.parameters())
    names = [g["name"] for g in task.configure_optimizers()["optimizer"].param_groups]
    assert names == ["dpt", "temporal"]
    with pytest.raises(ValueError, match="unknown groups \\['encoder'\\]"):
        FlashDepthTask(tiny_preset("flashdepth-s"), freeze=["encoder"])


def test_parameters_outside_every_group_are_refused() -> None:
    model = tiny_preset("depth-anything-v2-vits")
    model.extra_head = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="extra_head.weight"):
        FlashDepthTask(model)


@pytest.mark.parametrize(
    ("steps", "factors"), [(100, {0: 1e-4, 50: 0.50005, 100: 1.0}), (0, {0: 1.0})]
)
def test_linear_warmup_then_constant(steps: int, factors: dict[int, float]) -> None:
    task = FlashDepthTask(tiny_preset("depth-anything-v2-vits"), warmup_steps=steps, lr_vit=1.0)
    configured = task.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.LinearLR)
    seen = {}
    for step in range(201):
        seen[step] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    for step, factor in factors.items():
        assert seen[step] == pytest.approx(factor, rel=1e-6)
    assert seen[200] == pytest.approx(1.0)


def test_training_steps_follow_the_warmup_and_log_lr_per_group(tmp_path) -> None:
    task = FlashDepthTask(tiny_preset("flashdepth-s"), warmup_steps=4, lr_dpt=1e-3)
    fit = trainer(tmp_path, max_steps=2, limit_val_batches=0)
    fit.fit(task, loader(batch(["a"]), batch(["a"], start=3)))
    assert fit.global_step == 2
    # the logged lr is the one used by the second step: factor 1e-4 + (1 - 1e-4) / 4
    expected = 1e-3 * (1e-4 + (1 - 1e-4) * 1 / 4)
    assert float(fit.callback_metrics["train/lr_dpt"]) == pytest.approx(expected, rel=1e-5)
    assert torch.isfinite(fit.callback_metrics["train/loss"])


def test_init_weights_are_loaded_when_a_run_starts(tmp_path) -> None:
    source = tiny_preset("flashdepth-s")
    torch.save(source.state_dict(), tmp_path / "weights.pth")
    task = FlashDepthTask(tiny_preset("flashdepth-s"), init_weights=str(tmp_path / "weights.pth"))
    assert not torch.equal(
        task.model.depth_head.scratch.layer1_rn.weight, source.depth_head.scratch.layer1_rn.weight
    )
    trainer(tmp_path).validate(task, loader(batch(["a"])))
    theirs = source.state_dict()
    for name, mine in task.model.state_dict().items():
        assert torch.equal(mine, theirs[name]), name


def test_test_refuses_random_weights(tmp_path) -> None:
    task = FlashDepthTask(tiny_preset("flashdepth-s"))
    with pytest.raises(RuntimeError, match="--ckpt_path .* --model.init_weights"):
        trainer(tmp_path).test(task, loader(batch(["a"])))


def test_evaluation_is_per_dataset_skips_padding_and_averages(tmp_path) -> None:
    task = FlashDepthTask(tiny_preset("flashdepth-s"))
    first, second = batch(["sintel", "eth3d"], padding=[False, True]), batch(["eth3d"], start=9)
    results = trainer(tmp_path).validate(task, loader(first, second))[0]

    expected = {"sintel": VideoDepthMetrics(), "eth3d": VideoDepthMetrics()}
    task.eval()
    with torch.no_grad():
        for data, b in ((first, 0), (second, 0)):
            prediction = task(normalize(data["image"][b : b + 1]))[0]  # (T, H, W)
            prediction = nn.functional.interpolate(
                prediction[:, None], size=(30, 40), mode="bilinear", align_corners=True
            )[:, 0]
            expected[data["dataset"][b]].update(
                prediction, data["inverse_depth"][b], data["valid"][b]
            )
    for name, metrics in expected.items():
        values = metrics.compute()
        for key in ("abs_rel", "delta1", "boundary_f1", "flicker"):
            assert results[f"val/{name}/{key}"] == pytest.approx(float(values[key]), rel=1e-4)
    for key in ("abs_rel", "delta1"):
        mean = (results[f"val/sintel/{key}"] + results[f"val/eth3d/{key}"]) / 2
        assert results[f"val/{key}"] == pytest.approx(mean)


def test_predict_carries_the_state_within_a_video_and_resets_on_a_new_one(tmp_path) -> None:
    model = tiny_preset("flashdepth-s")
    nn.init.normal_(model.temporal_out[1].weight, std=0.5)  # make the state matter
    torch.save(model.state_dict(), tmp_path / "w.pth")
    task = FlashDepthTask(model, init_weights=str(tmp_path / "w.pth"))
    whole = batch(["a"], frames=4)
    halves = []
    for part, start in ((slice(0, 2), 0), (slice(2, 4), 2)):
        half = dict(whole, start_frame=torch.tensor([start]))
        half["image"] = whole["image"][:, part]
        half["inverse_depth"] = whole["inverse_depth"][:, part]
        halves.append(half)
    restart = dict(halves[1], scene=["other"])
    outputs = trainer(tmp_path).predict(task, loader(whole, *halves, restart))

    streamed = torch.cat([outputs[1]["inverse_depth"], outputs[2]["inverse_depth"]], dim=1)
    torch.testing.assert_close(streamed, outputs[0]["inverse_depth"], rtol=1e-4, atol=1e-4)
    fresh = trainer(tmp_path).predict(task, loader(restart))[0]["inverse_depth"]
    torch.testing.assert_close(outputs[3]["inverse_depth"], fresh, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(outputs[3]["inverse_depth"], outputs[2]["inverse_depth"], atol=1e-3)
    assert outputs[0]["inverse_depth"].shape == (1, 4, 30, 40)
