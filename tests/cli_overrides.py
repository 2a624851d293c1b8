"""Overrides that shrink any recipe or preset to a CPU test: tiny data, trainer and model.

The lists are appended to a ``flashdepth <subcommand> -c recipe.yaml`` command line (CLI,
recipe, DDP, resume and stage-chain tests). The model is the tiny test size ``vitt`` (a 4-block,
48-wide DINOv2 ViT and a 32-wide DPT, 0.4 M parameters against ViT-S's 24.8 M, see
:data:`flashdepth.models.encoder.TEST_VIT_CONFIGS`): the glue tests run on it, the tests of the
architecture itself keep the real ViT-S. :func:`tiny_preset` does the same for a preset built
in Python, and :func:`shrink_presets` (the ``tiny_presets`` fixture of ``tests/conftest.py``)
for the commands that build presets by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

from flashdepth.models import registry

#: The encoder name of the tiny test size (no released weights).
TINY_ENCODER = "vitt"


def tiny_data(cache_dir: Path, clips: int = 4) -> list[str]:
    """Synthetic scenes of 4 frames at 42x56: 2-frame training windows, batch 1."""
    return [
        "--data=datamodules.synthetic_clips.SyntheticClipDataModule",
        f"--data.cache_dir={cache_dir}",
        f"--data.num_train_clips={clips}",
        "--data.num_val_clips=2",
        "--data.frames=4",
        "--data.height=42",
        "--data.width=56",
        "--data.clips_per_shard=1",
        "--data.clip_length=2",
        "--data.image_size=[42, 56]",
        "--data.eval_short_side=42",
        "--data.batch_size=1",
        "--data.epoch_length=2",
        "--data.shuffle_buffer=2",
        "--data.num_workers=0",
    ]


def tiny_trainer(root: Path, recipe_callbacks: bool = False) -> list[str]:
    """CPU, full precision, the run folder ``root``; no callbacks and no progress bar.

    ``recipe_callbacks`` keeps the recipe's callbacks (checkpoints, progress bar, media).
    """
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.callbacks=[]"]
    return [
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.num_nodes=1",
        "--trainer.strategy=auto",
        "--trainer.precision=32-true",
        "--trainer.enable_model_summary=false",
        *([] if recipe_callbacks else quiet),
        f"--trainer.default_root_dir={root}",
    ]


#: FlashDepth-S in place of a recipe's model (the FlashDepth-L recipes on a CPU, where the
#: real ViT-S is wanted; :func:`tiny_model` is smaller still).
SMALL_MODEL = [
    "--model.model.init_args.encoder=vits",
    "--model.model.init_args.stage=1",
]


def tiny_model(teacher: bool = False) -> list[str]:
    """The tiny test encoder in place of a recipe's; the temporal width follows it.

    Every recipe's Mamba and GRU fit its 32-wide DPT.

    Args:
        teacher: Also shrink the frozen teacher of a hybrid recipe (stage 2, FlashDepth Full).
    """
    tiny = [f"--model.model.init_args.encoder={TINY_ENCODER}"]
    if teacher:
        tiny.append(f"--model.model.init_args.teacher_encoder={TINY_ENCODER}")
    return tiny


def tiny_preset_overrides(name: str) -> dict[str, str]:
    """Constructor arguments that build preset ``name`` with the tiny encoder (and teacher)."""
    overrides = {"encoder": TINY_ENCODER}
    if name == "flashdepth-full":  # the one preset with a teacher
        overrides["teacher_encoder"] = TINY_ENCODER
    return overrides


def tiny_preset(name: str, **overrides: object) -> nn.Module:
    """``create_model(name)`` at the tiny size, random weights; ``overrides`` go to the preset."""
    return registry.create_model(name, **{**tiny_preset_overrides(name), **overrides})


def shrink_presets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build every preset at the tiny size while ``monkeypatch`` is active, in this process.

    ``flashdepth.create_model`` (and so ``flashdepth stream``, ``export``, ``benchmark`` and
    ``evaluate``) builds ``name`` with :func:`tiny_preset_overrides`; the names, the weights
    loading and everything else stay.
    """
    create = registry.create_model

    def create_tiny(
        name: str,
        weights: str | Path | dict | None = None,
        strict: bool = True,
        **overrides: object,
    ) -> nn.Module:
        return create(name, weights, strict, **{**tiny_preset_overrides(name), **overrides})

    monkeypatch.setattr(registry, "create_model", create_tiny)
