"""Many videos on many GPUs and nodes: ``flashdepth stream INPUT… --devices N [--num-nodes M]``.

Lightning Fabric starts and joins the processes as Lightning does for training. ``--devices
N`` alone runs N processes on this machine: strategy ``ddp`` (the default) runs the same
command again in N - 1 subprocesses, ``ddp_spawn`` spawns them from Python (for a
notebook). Under ``torchrun`` or in a SLURM job step (``srun``) the processes already exist
and Fabric joins them: give the launcher's ``--devices`` and ``--num-nodes``. Processes on
CPUs talk through gloo, on GPUs through NCCL, and each takes its own device
(``--accelerator``). Inputs must be at the same paths on every node (a shared file system).

**Who streams what.** Rank 0 probes the length of every input (:func:`probe_frames`: the
frame count of a video's header, read with PyAV, or the number of images of a sequence;
cameras and URLs are not opened and count as unknown) and broadcasts the lengths; every rank
then computes the same plan (:func:`plan_shares`): the inputs of known length, longest first,
each to the rank with the fewest frames planned so far (ties: the lowest rank), then those of
unknown length round robin, starting with the least-loaded rank. Each video goes to exactly
one rank, whole (its temporal state needs its frames in order). Each rank streams its share,
in the order given, with the :class:`~flashdepth.inference.batch.BatchRunner` of a single
process: finished outputs skipped, failures recorded while the rest goes on, Ctrl-C
finalising what was written, so rerunning the command resumes on any number of processes.

**Report.** Rank 0 gathers the per-rank results, writes the merged
``{out}/stream_report.json`` (inputs in the order given; ``world_size`` and ``ranks``: per
rank its device, its inputs and their planned frames) and prints the one summary. The exit
status is the merged one on rank 0; the other ranks exit 0, so that a launcher does not tear
down a run that merely had a failed input. While the run goes on, each rank's runner
rewrites the report file after each of its inputs (atomically): a killed run leaves the
account of the rank that wrote last, the per-video ``units.json`` files tell the rest.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning.fabric import Fabric
from lightning.fabric.utilities.exceptions import MisconfigurationException
from rich.console import Console

from flashdepth.inference.batch import BatchReport, InputResult
from flashdepth.inference.command import EXIT_OK, build_runner, finish
from flashdepth.inference.inputs import UsageError, is_live
from flashdepth.inference.sources import SourceError, open_source


def probe_frames(spec: str) -> int | None:
    """Frames of an input from its header, without decoding (``None``: unknown).

    Video files are opened with PyAV and read the count their stream header states; image
    sequences count their images. Cameras and URLs are not opened. An input that cannot be
    opened is unknown here and fails, with its reason, on the rank that gets it.
    """
    if is_live(spec):
        return None
    try:
        source = open_source(spec)
    except SourceError:
        return None
    try:
        return source.info.num_frames
    finally:
        source.close()


def plan_shares(frames: Sequence[int | None], world_size: int) -> list[list[int]]:
    """Which inputs each rank streams, balanced by length (see the module docstring).

    Args:
        frames: Per input, its frame count (``None``: unknown).
        world_size: Number of ranks.

    Returns:
        Per rank, the positions of its inputs in ``frames``, ascending; every position is in
        exactly one share.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    shares: list[list[int]] = [[] for _ in range(world_size)]
    loads = [0] * world_size
    known = [index for index, count in enumerate(frames) if count is not None]
    for index in sorted(known, key=lambda index: (-int(frames[index] or 0), index)):
        rank = min(range(world_size), key=lambda rank: (loads[rank], rank))
        shares[rank].append(index)
        loads[rank] += int(frames[index] or 0)
    order = sorted(range(world_size), key=lambda rank: (loads[rank], rank))
    unknown = [index for index, count in enumerate(frames) if count is None]
    for position, index in enumerate(unknown):
        shares[order[position % world_size]].append(index)
    return [sorted(share) for share in shares]


@dataclass
class RankReport:
    """What one rank streamed, sent to rank 0.

    Attributes:
        rank: Global rank.
        device: Its torch device.
        inputs: Positions of its inputs in the full input list.
        results: Its runner's results, one per input of its share.
        interrupted: Its batch was stopped by Ctrl-C.
    """

    rank: int
    device: str
    inputs: list[int]
    results: list[InputResult]
    interrupted: bool


def merge_reports(
    out_dir: Path,
    inputs: Sequence[str],
    frames: Sequence[int | None],
    ranks: Sequence[RankReport],
    about: dict[str, Any],
) -> BatchReport:
    """One report of every rank's results, with the plan recorded under ``ranks``.

    Inputs are in the order given; an input never streamed by a rank is ``not started``.
    """
    results = [InputResult(spec) for spec in inputs]
    for part in ranks:
        for index, result in zip(part.inputs, part.results, strict=True):
            results[index] = result
    plan = [
        {
            "rank": part.rank,
            "device": part.device,
            "inputs": [inputs[index] for index in part.inputs],
            "planned_frames": sum(frames[index] or 0 for index in part.inputs),
            "unknown_length": sum(frames[index] is None for index in part.inputs),
        }
        for part in ranks
    ]
    record = {**about, "world_size": len(ranks), "ranks": plan}
    return BatchReport(out_dir, results, any(part.interrupted for part in ranks), record)


def stream_distributed(
    options: argparse.Namespace, argv: list[str], formats: list[str], inputs: list[str]
) -> int:
    """Launch (or join) the processes and stream ``inputs`` across them; return the status.

    Args:
        options: The parsed command line of ``flashdepth stream``.
        argv: The arguments as typed (recorded in the report).
        formats: The checked output formats.
        inputs: The expanded inputs.

    Returns:
        On rank 0 the merged exit status (0 done or skipped, 1 a failure, 130 Ctrl-C); 0
        elsewhere.
    """
    if options.device != "auto":
        raise UsageError(
            f"--device {options.device} names one device, but with --devices every process "
            "takes its own; choose their kind with --accelerator cpu|cuda"
        )
    accelerator = options.accelerator or "auto"
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise UsageError("--accelerator cuda: CUDA is not available here; use --accelerator cpu")
    try:
        fabric = Fabric(
            accelerator=accelerator,
            devices=options.devices,
            num_nodes=options.num_nodes or 1,
            strategy=options.strategy or "ddp",
        )
    except (MisconfigurationException, ValueError) as error:
        raise UsageError(
            f"--devices {options.devices} --accelerator {accelerator}: {error}"
        ) from error
    return fabric.launch(_run_rank, options, argv, formats, inputs)


def _run_rank(
    fabric: Fabric,
    options: argparse.Namespace,
    argv: list[str],
    formats: list[str],
    inputs: list[str],
) -> int:
    """One process: plan with the others, stream its share, send its results to rank 0."""
    started = time.perf_counter()
    leader = fabric.global_rank == 0
    console, errors = Console(quiet=not leader), Console(stderr=True, quiet=not leader)
    frames = fabric.broadcast([probe_frames(spec) for spec in inputs] if leader else None)
    share = plan_shares(frames, fabric.world_size)[fabric.global_rank]
    progress = leader and not options.no_progress
    runner = build_runner(options, argv, formats, str(fabric.device), errors, progress)
    report = runner.run([inputs[index] for index in share])
    mine = RankReport(
        fabric.global_rank, str(fabric.device), share, report.results, report.interrupted
    )
    ranks: list[Any] = [mine]
    if fabric.world_size > 1:
        ranks = [None] * fabric.world_size
        dist.all_gather_object(ranks, mine)
    if not leader:
        return EXIT_OK
    merged = merge_reports(options.out, inputs, frames, ranks, runner.about)
    merged.write()
    status = finish(merged, console, errors)
    wall = time.perf_counter() - started
    processes = f"{fabric.world_size} process{'es' if fabric.world_size > 1 else ''}"
    console.print(
        f"{processes}; {merged.frames} frames in {wall:.1f} s of wall time "
        f"({merged.frames / wall:.2f} frames/s together)",
        highlight=False,
    )
    return status
