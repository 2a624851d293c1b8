"""Benchmark: frames/s of the training data pipeline in one worker versus bare decoding.

Writes a temporary set of 1080p clip shards (smooth random images with fine texture, smooth
depth in metres with a sky band and scattered invalid pixels), then measures on the same files

* bare decoding: every frame's JPEG (PIL, as the shard decoder does) and ``.depth.npz``
  (:func:`datamodules.format.decode_depth`), nothing else;
* the full training pipeline of :class:`~datamodules.clips.ClipDataModule` loading in the
  main process (= one DataLoader worker): tar reading, window cutting, shuffle buffer, decoding
  of the window's frames, depth to inverse depth, augmentation (crop, flip, colour jitter) and
  collation,

and prints both rates (frames per second, the best of a few alternating rounds) and their
ratio. The training rate divided into the
GPU's frames/s says how many DataLoader workers a GPU needs. Run it with
``python -m datamodules.benchmark [--height 1080 --width 1920 --crop 518 518 --seconds 10]``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable
from itertools import cycle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from datamodules.clips import ClipDataModule
from datamodules.format import (
    Clip,
    decode_depth,
    frame_field,
    make_key,
    make_meta,
    read_meta,
)
from datamodules.shard_writer import ClipShardWriter
from datamodules.shards import SkipCounter, read_shard


def write_benchmark_shards(
    folder: Path, clips: int, frames: int, height: int, width: int, seed: int = 0
) -> list[str]:
    """Write ``clips`` clips of ``frames`` frames at ``height`` x ``width``, 2 clips per shard."""
    generator = torch.Generator().manual_seed(seed)
    pattern = str(folder / "benchmark-%06d.tar")
    shards: list[str] = []
    with ClipShardWriter(pattern, max_clips_per_shard=2, post=shards.append) as writer:
        for index in range(clips):
            images = _smooth((frames, 3, height, width), generator) * 200 + 20
            images += torch.randn(images.shape, generator=generator) * 6  # fine texture
            images = images.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # (T, H, W, 3)
            depth_m = 1.0 + 49.0 * _smooth((frames, 1, height, width), generator)[:, 0]
            depth_m[:, : height // 6] = float("inf")  # sky band
            depth_m[torch.rand(depth_m.shape, generator=generator) < 0.01] = float("nan")
            meta = make_meta("benchmark", f"clip{index}", list(range(frames)))
            key = make_key("benchmark", f"clip{index}", 0)
            writer.write(Clip(key, meta, images.numpy(), depth_m.numpy()))
    return shards


def _smooth(shape: tuple[int, int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Values in [0, 1] varying smoothly over the image: coarse noise upsampled bicubically."""
    frames, channels, height, width = shape
    coarse = torch.rand(frames, channels, 9, 16, generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bicubic").clamp(0, 1)


def bare_decoder(shards: list[str]) -> Callable[[], int]:
    """A step that decodes the next frame's JPEG (PIL) and depth npz, cycling over the shards.

    The shard files are read into memory first (by the pipeline's tar reader), so only decoding
    is timed.
    """
    samples = [sample for shard in shards for sample in read_shard(shard, SkipCounter().skip)]
    frames = cycle(
        [(sample, t) for sample in samples for t in range(len(read_meta(sample)["frame_ids"]))]
    )

    def step() -> int:
        sample, t = next(frames)
        with Image.open(io.BytesIO(sample[frame_field(t, "jpg")])) as image:
            np.asarray(image.convert("RGB"))
        decode_depth(sample[frame_field(t, "depth.npz")])
        return 1

    return step


def training_loader(
    folder: str, crop: tuple[int, int], clip_length: int, batch_size: int
) -> Callable[[], int]:
    """A step that takes the next batch of ClipDataModule's training loader over the shards in
    ``folder``, loading in this process; the first batch (filling the shuffle buffer) is taken
    here, outside the timing."""
    dm = ClipDataModule(
        train_shards=folder,
        clip_length=clip_length,
        image_size=crop,
        batch_size=batch_size,
        num_workers=0,
        shuffle_buffer=4,
        epoch_length=1_000_000,
    )
    dm.setup("fit")
    batches = iter(dm.train_dataloader())
    next(batches)

    def step() -> int:
        image = next(batches)["image"]  # (B, T, 3, H, W)
        return image.shape[0] * image.shape[1]

    return step


def rate(step: Callable[[], int], seconds: float) -> float:
    """Frames per second of repeating ``step`` (which returns its frame count) for ``seconds``."""
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        frames += step()
    return frames / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.benchmark",
        description="Decoded frames/s of the training pipeline (one worker) vs bare decoding.",
    )
    parser.add_argument("--height", type=int, default=1080, help="stored frame height (px)")
    parser.add_argument("--width", type=int, default=1920, help="stored frame width (px)")
    parser.add_argument("--frames", type=int, default=16, help="frames per stored clip")
    parser.add_argument("--clips", type=int, default=8, help="stored clips")
    parser.add_argument("--crop", type=int, nargs=2, default=(518, 518), metavar=("H", "W"))
    parser.add_argument("--clip-length", type=int, default=5, help="frames per training window")
    parser.add_argument("--batch-size", type=int, default=1, help="training batch size")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (best kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one DataLoader worker uses one core
    with tempfile.TemporaryDirectory(prefix="flashdepth-benchmark-") as folder:
        print(
            f"writing {args.clips} clips x {args.frames} frames at {args.height}x{args.width} ..."
        )
        shards = write_benchmark_shards(
            Path(folder), args.clips, args.frames, args.height, args.width
        )
        bare_step = bare_decoder(shards)
        crop = (args.crop[0], args.crop[1])
        train_step = training_loader(folder, crop, args.clip_length, args.batch_size)
        # alternate short rounds and keep the best of each, so load from other processes on a
        # shared machine hits both sides alike
        rounds = [
            (
                rate(bare_step, args.seconds / args.rounds),
                rate(train_step, args.seconds / args.rounds),
            )
            for _ in range(args.rounds)
        ]
    bare, train = max(r[0] for r in rounds), max(r[1] for r in rounds)
    rows = [
        ("bare decode (JPEG + depth npz)", f"{bare:10.1f}"),
        (f"training pipeline, 1 worker, crop {crop[0]}x{crop[1]}", f"{train:10.1f}"),
        ("ratio training / bare", f"{train / bare:10.2f}"),
    ]
    print(f"\n{'stage':<44}{'frames/s':>10}")
    for name, value in rows:
        print(f"{name:<44}{value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
