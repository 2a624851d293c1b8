"""Benchmark: frames/s of the training data pipeline in one worker versus bare decoding.

Writes a temporary set of 1080p clip shards (smooth random images with fine texture, smooth
depth in metres with a sky band and scattered invalid pixels), then measures on the same files

* bare decoding: every frame's JPEG (PIL, as the shard decoder does) and ``.depth.npz``
  (:func:`datamodules.format.decode_depth`), nothing else;
* the worker side of the training pipeline of :class:`~datamodules.clips.ClipDataModule`,
  loading in this process with one thread, as one DataLoader worker does: tar reading, window
  cutting, shuffle buffer, decoding of the window's frames, augmentation (crop, flip, colour
  parameters drawn) and collation of uint8 frames and float16 depth;
* the accelerator side: :func:`~datamodules.samples.finish_batch` on a training batch (uint8 to
  float, each clip's colour change, depth to inverse depth and validity), on the CPU with one
  thread and on CUDA when there is a GPU, in milliseconds per frame.

Each rate is the best of a few alternating rounds, by the wall clock and by this process's CPU
time (which other processes on a shared machine do not inflate); the spread over the rounds is
printed too. The training rate divided into the GPU's frames/s says how many DataLoader workers
a GPU needs. Run it with
``python -m datamodules.benchmark [--height 1080 --width 1920 --crop 518 518 --seconds 10]``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable, Iterator
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
from datamodules.samples import finish_batch
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


def training_batches(
    folder: str, crop: tuple[int, int], clip_length: int, batch_size: int
) -> Iterator[dict]:
    """ClipDataModule's training batches over the shards in ``folder``, loaded in this process.

    The batches are as the workers ship them: uint8 frames, float16 depth.
    """
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
    return iter(dm.train_dataloader())


def batch_step(batches: Iterator[dict]) -> Callable[[], int]:
    """A step that takes the next batch and returns its frame count."""

    def step() -> int:
        image = next(batches)["image"]  # (B, T, 3, H, W)
        return image.shape[0] * image.shape[1]

    return step


def rate(step: Callable[[], int], seconds: float) -> tuple[float, float]:
    """Frames per wall-clock second and per CPU second of repeating ``step``.

    ``step`` returns its frame count and is repeated for ``seconds`` of wall-clock time.
    """
    frames, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        frames += step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return frames / wall, frames / max(cpu, 1e-9)


def finishing_ms_per_frame(batch: dict, device: torch.device, repeats: int = 5) -> float:
    """Milliseconds per frame of :func:`finish_batch` on ``device`` (best of ``repeats``).

    The batch is moved to ``device`` first, outside the timing, as a Trainer's transfer does.
    """
    on_device = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    frames = batch["image"].shape[0] * batch["image"].shape[1]
    finish_batch(on_device)  # warm-up (CUDA kernels, allocator)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        finish_batch(on_device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 1000.0 * best / frames


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False,  # a renamed option must not silently match a longer one
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
    torch.set_num_threads(1)  # this process plays one DataLoader worker: one thread
    with tempfile.TemporaryDirectory(prefix="flashdepth-benchmark-") as folder:
        print(
            f"writing {args.clips} clips x {args.frames} frames at {args.height}x{args.width} ..."
        )
        shards = write_benchmark_shards(
            Path(folder), args.clips, args.frames, args.height, args.width
        )
        bare_step = bare_decoder(shards)
        crop = (args.crop[0], args.crop[1])
        batches = training_batches(folder, crop, args.clip_length, args.batch_size)
        first = next(batches)  # fills the shuffle buffer, outside the timing
        train_step = batch_step(batches)
        # alternate short rounds and keep the best of each, so load from other processes on a
        # shared machine hits both sides alike
        rounds = [
            (
                rate(bare_step, args.seconds / args.rounds),
                rate(train_step, args.seconds / args.rounds),
            )
            for _ in range(args.rounds)
        ]
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    finishing = [(device, finishing_ms_per_frame(first, device)) for device in devices]
    _print_table(crop, rounds, finishing)
    return 0


def _print_table(
    crop: tuple[int, int],
    rounds: list[tuple[tuple[float, float], tuple[float, float]]],
    finishing: list[tuple[torch.device, float]],
) -> None:
    """Print the rates, their ratio, the spread over the rounds and the finishing cost.

    The rates are the best of the rounds, in wall-clock and CPU time; the finishing cost is
    the device-side one.
    """
    best = [[max(r[side][clock] for r in rounds) for clock in (0, 1)] for side in (0, 1)]
    (bare, bare_cpu), (train, train_cpu) = best
    rows = [
        ("bare decode (JPEG + depth npz)", bare, bare_cpu, ".1f"),
        (f"training pipeline, 1 worker, crop {crop[0]}x{crop[1]}", train, train_cpu, ".1f"),
        ("ratio training / bare", train / bare, train_cpu / bare_cpu, ".2f"),
    ]
    print(f"\n{'stage':<44}{'frames/s':>10}{'frames/CPU-s':>14}")
    for name, wall, cpu, spec in rows:
        print(f"{name:<44}{wall:10{spec}}{cpu:14{spec}}")
    print(f"\nspread over {len(rounds)} rounds (frames/s, wall clock | CPU time):")
    for side, name in ((0, "bare decode"), (1, "training pipeline")):
        wall = " ".join(f"{r[side][0]:.1f}" for r in rounds)
        cpu = " ".join(f"{r[side][1]:.1f}" for r in rounds)
        print(f"  {name:<20}{wall} | {cpu}")
    print("\ndevice side, finish_batch (uint8 -> float, colour, depth targets):")
    for device, ms in finishing:
        where = "cpu, 1 thread" if device.type == "cpu" else torch.cuda.get_device_name(device)
        print(f"  {where:<40}{ms:10.3f} ms/frame")


if __name__ == "__main__":
    raise SystemExit(main())
