"""Samples and batches of the clip DataModules: depth targets, the sample dict, collation.

A batch is made in two steps. The DataLoader workers collate what storage holds, compactly
(:func:`collate_clips`): ``image`` (B, T, 3, H, W) uint8 RGB, channels-last in memory;
``colour`` (B, 4) float32, each clip's colour parameters (``(brightness, contrast, saturation,
hue turn)``, :mod:`datamodules.augment`); ``depth`` (B, T, Hd, Wd) float16 metres as stored
(+inf sky, NaN invalid). After the transfer, :func:`finish_batch` completes it on the
accelerator (``ClipDataModule.on_after_batch_transfer`` calls it) into the batch contract the
task sees: ``image`` (B, T, 3, H, W) float32 RGB in [0, 1], colour applied; ``inverse_depth``
(B, T, Hd, Wd) float32 in 1/m, sky 0, invalid 0; ``valid`` (B, T, Hd, Wd) bool, False where the
depth was invalid (NaN), True for sky; ``colour`` kept. Both carry ``key``, ``dataset``,
``scene`` lists of str; ``start_frame`` (B,) long, the first frame id of the window;
``is_padding`` (B,) bool, True for evaluation padding the task must ignore; ``skipped`` (B,)
long, the bad samples the worker dropped just before each sample (sum it over batches and ranks
to count skipped samples).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import default_collate

from datamodules.augment import apply_colour, identity_colour
from datamodules.format import ShardFormatError


def depth_targets(depth_m: Tensor) -> tuple[Tensor, Tensor]:
    """Turn depth in metres (+inf sky, NaN invalid) into ``(inverse_depth 1/m, valid)``.

    Sky becomes a valid 0 1/m; NaN (and any non-positive value) becomes invalid with 0 1/m.
    """
    valid = depth_m > 0  # False for NaN
    inverse_depth = depth_m.reciprocal().masked_fill_(~valid, 0.0)  # sky: 1/inf = 0
    return inverse_depth, valid


def make_sample(
    clip_key: str,
    meta: dict,
    image: Tensor,
    depth_m: Tensor,
    skipped: int,
    colour: Tensor | None = None,
) -> dict:
    """One sample as the workers collate it (see :func:`collate_clips`).

    Args:
        clip_key: The clip's sample key.
        meta: The clip's metadata (``dataset``, ``scene``, ``frame_ids``).
        image: (T, 3, H, W) uint8 RGB.
        depth_m: (T, Hd, Wd) depth in metres, +inf sky, NaN invalid; stored as float16 (exact
            for shard depth, which is float16).
        skipped: Bad samples the worker dropped just before this one.
        colour: (4,) colour parameters; default :data:`~datamodules.augment.IDENTITY_COLOUR`.

    Returns:
        The sample dict.
    """
    return {
        "image": image,
        "colour": identity_colour(1)[0] if colour is None else colour,
        "depth": depth_m.to(torch.float16),
        "key": clip_key,
        "dataset": meta["dataset"],
        "scene": meta["scene"],
        "start_frame": int(meta["frame_ids"][0]),
        "is_padding": False,
        "skipped": skipped,
    }


def collate_clips(samples: list[dict]) -> dict:
    """Batch samples as the DataLoader workers ship them (finished by :func:`finish_batch`).

    Returns:
        ``image`` (B, T, 3, H, W) uint8 RGB, channels-last in memory; ``colour`` (B, 4)
        float32; ``depth`` (B, T, Hd, Wd) float16 metres (+inf sky, NaN invalid); ``key``,
        ``dataset``, ``scene`` lists of str; ``start_frame`` (B,) long (first frame id of the
        window); ``is_padding`` (B,) bool; ``skipped`` (B,) long (bad samples dropped before
        each).

    Raises:
        ValueError: If the clips differ in size (possible in evaluation with batch size > 1).
    """
    shapes = {(tuple(s["image"].shape), tuple(s["depth"].shape)) for s in samples}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot batch clips of different sizes {sorted(shapes)} (keys "
            f"{[s['key'] for s in samples]}); use a batch size of 1 for evaluation"
        )
    # default_collate stacks straight into shared memory inside DataLoader workers; frames keep
    # the (T, H, W, 3) layout they were decoded in, so stacking them copies, never transposes
    frames = default_collate([s["image"].permute(0, 2, 3, 1) for s in samples])
    batch = {"image": frames.permute(0, 1, 4, 2, 3)}  # (B, T, H, W, 3) -> (B, T, 3, H, W)
    for name in ("colour", "depth"):
        batch[name] = default_collate([s[name] for s in samples])
    for name in ("key", "dataset", "scene"):
        batch[name] = [s[name] for s in samples]
    batch["start_frame"] = torch.tensor([s["start_frame"] for s in samples], dtype=torch.long)
    batch["is_padding"] = torch.tensor([s["is_padding"] for s in samples], dtype=torch.bool)
    batch["skipped"] = torch.tensor([s["skipped"] for s in samples], dtype=torch.long)
    return batch


def finish_batch(batch: dict) -> dict:
    """Complete a collated batch on its device: float frames with colour, depth targets.

    The one implementation of the accelerator's share of the data pipeline.
    ``ClipDataModule.on_after_batch_transfer`` calls it after every transfer under a Trainer;
    code that iterates the loaders itself calls it on each batch (after moving the batch to its
    device). ``image`` uint8 becomes float32 in [0, 1] with each clip's ``colour`` applied
    (:func:`~datamodules.augment.apply_colour`); ``depth`` (metres) becomes ``inverse_depth``
    and ``valid`` (:func:`depth_targets`). A finished batch (float image, no ``depth``) comes
    back as it is, so finishing twice is harmless.

    Args:
        batch: A batch of :func:`collate_clips`, on any device.

    Returns:
        A new dict: ``image`` (B, T, 3, H, W) float32 RGB in [0, 1] (contiguous);
        ``inverse_depth`` (B, T, Hd, Wd) float32 1/m; ``valid`` (B, T, Hd, Wd) bool; ``depth``
        removed; every other entry as it was.

    Raises:
        KeyError: If a uint8 image comes without its ``colour``.
    """
    finished = dict(batch)
    if not batch["image"].is_floating_point():
        if "colour" not in batch:
            raise KeyError(
                "a uint8 clip batch needs 'colour' (B, 4), the colour parameters of each clip; "
                "build batches with datamodules.samples.collate_clips"
            )
        finished["image"] = apply_colour(batch["image"], batch["colour"])
    if "depth" in batch:
        depth_m = finished.pop("depth").float()  # float16 -> float32 exactly
        finished["inverse_depth"], finished["valid"] = depth_targets(depth_m)
    return finished


def describe_problem(error: ShardFormatError) -> str:
    """The problem of a rejected sample, for a skip warning that already names shard and key.

    Returns:
        ``field 'NNN.kind': problem`` with the field as stored in the shard (also for a
        training window, which is decoded straight from the stored clip), or the bare problem
        when it concerns no single field.
    """
    return f"field {error.field!r}: {error.problem}" if error.field else error.problem
