"""Command-line overrides that shrink any recipe to a CPU test: tiny synthetic data and trainer.

Used by the CLI, recipe, DDP, resume and quickstart tests; every list is appended to a
``flashdepth <subcommand> -c recipe.yaml`` command line.
"""

from __future__ import annotations

from pathlib import Path


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
    """CPU, full precision, the run folder ``root``; no callbacks and no progress bar unless
    ``recipe_callbacks`` keeps the recipe's (checkpoints, progress bar, media)."""
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


#: FlashDepth-S in place of a recipe's model (for the FlashDepth-L recipes on a CPU).
SMALL_MODEL = [
    "--model.model.init_args.encoder=vits",
    "--model.model.init_args.stage=1",
]
