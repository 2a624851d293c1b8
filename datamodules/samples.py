"""Samples and batches of the clip DataModules: depth targets, the sample dict, collation.

The batch contract (dict): ``image`` (B, T, 3, H, W) float RGB in [0, 1]; ``inverse_depth``
(B, T, Hd, Wd) float32 in 1/m, sky 0, invalid 0; ``valid`` (B, T, Hd, Wd) bool, False where
the depth was invalid (NaN), True for sky; ``key``, ``dataset``, ``scene`` lists of str;
``start_frame`` (B,) long, the first frame id of the window; ``is_padding`` (B,) bool, True for
evaluation padding the task must ignore; ``skipped`` (B,) long, the bad samples the worker
dropped just before each sample (sum it over batches and ranks to count skipped samples).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import default_collate

from datamodules.format import ShardFormatError


def depth_targets(depth_m: Tensor) -> tuple[Tensor, Tensor]:
    """Turn depth in metres (+inf sky, NaN invalid) into ``(inverse_depth 1/m, valid)``.

    Sky becomes a valid 0 1/m; NaN (and any non-positive value) becomes invalid with 0 1/m.
    """
    valid = depth_m > 0  # False for NaN
    inverse_depth = depth_m.reciprocal().masked_fill_(~valid, 0.0)  # sky: 1/inf = 0
    return inverse_depth, valid


def make_sample(
    clip_key: str, meta: dict, image: Tensor, inverse_depth: Tensor, valid: Tensor, skipped: int
) -> dict:
    """One sample of the batch contract (see :func:`collate_clips`)."""
    return {
        "image": image,
        "inverse_depth": inverse_depth,
        "valid": valid,
        "key": clip_key,
        "dataset": meta["dataset"],
        "scene": meta["scene"],
        "start_frame": int(meta["frame_ids"][0]),
        "is_padding": False,
        "skipped": skipped,
    }


def collate_clips(samples: list[dict]) -> dict:
    """Batch samples into the batch contract of the clip DataModules.

    Returns:
        ``image`` (B, T, 3, H, W) float RGB in [0, 1]; ``inverse_depth`` (B, T, Hd, Wd) in 1/m
        (sky and invalid 0); ``valid`` (B, T, Hd, Wd) bool; ``key``, ``dataset``, ``scene``
        lists of str; ``start_frame`` (B,) long (first frame id of the window);
        ``is_padding`` (B,) bool; ``skipped`` (B,) long (bad samples dropped before each).

    Raises:
        ValueError: If the clips differ in size (possible in evaluation with batch size > 1).
    """
    shapes = {(tuple(s["image"].shape), tuple(s["valid"].shape)) for s in samples}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot batch clips of different sizes {sorted(shapes)} (keys "
            f"{[s['key'] for s in samples]}); use a batch size of 1 for evaluation"
        )
    # default_collate stacks straight into shared memory inside DataLoader workers
    tensors = ("image", "inverse_depth", "valid")
    batch = {name: default_collate([s[name] for s in samples]) for name in tensors}
    for name in ("key", "dataset", "scene"):
        batch[name] = [s[name] for s in samples]
    batch["start_frame"] = torch.tensor([s["start_frame"] for s in samples], dtype=torch.long)
    batch["is_padding"] = torch.tensor([s["is_padding"] for s in samples], dtype=torch.bool)
    batch["skipped"] = torch.tensor([s["skipped"] for s in samples], dtype=torch.long)
    return batch


def describe_problem(error: ShardFormatError) -> str:
    """The problem of a rejected sample, for a skip warning that already names shard and key.

    Returns:
        ``field 'NNN.kind': problem`` with the field as stored in the shard (also for a
        training window, which is decoded straight from the stored clip), or the bare problem
        when it concerns no single field.
    """
    return f"field {error.field!r}: {error.problem}" if error.field else error.problem
