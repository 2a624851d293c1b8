"""Tests for datamodules.eval_stream: every clip once and ranks in step, on any shard count.

The plan is tested directly; the streams through ClipDataModule, on ranks simulated with
RANK/WORLD_SIZE and real DataLoader workers (and, marked slow, real DDP ranks).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.clips import ClipDataModule
from datamodules.eval_stream import plan_eval
from datamodules.format import Clip, decode_clip, make_key, make_meta
from datamodules.network_input import network_frames
from datamodules.samples import finish_batch
from datamodules.shard_writer import ClipShardWriter
from datamodules.shards import BadSampleWarning, SampleEntry, SkipCounter, read_shard
from tests.datamodules.test_clips import (
    HEIGHT,
    WIDTH,
    grey_clip,
    loader_batches,
    set_rank,
    write_set,
    write_without_depth,
)

COUNTS = [3, 1, 2, 1, 1]  # clips of shards s0 .. s4
ENTRIES = [
    SampleEntry(f"s{shard}.tar", f"s{shard}c{clip}", ())
    for shard, count in enumerate(COUNTS)
    for clip in range(count)
]


def _keys(entries: list[SampleEntry]) -> list[str]:
    return [entry.key for entry in entries]


def test_readers_take_contiguous_runs_of_clips_padded_to_the_same_count() -> None:
    plan = plan_eval(ENTRIES, world_size=2, num_workers=1, batch_size=3)
    assert [_keys(entries) for entries, _ in plan[0]] == [["s0c0", "s0c1", "s0c2", "s1c0"]]
    assert [_keys(entries) for entries, _ in plan[1]] == [["s2c0", "s2c1", "s3c0", "s4c0"]]
    assert [n for _, n in plan[0]] == [n for _, n in plan[1]] == [6]  # 4 clips: 2 batches of 3


def test_readers_differ_by_at_most_one_clip_and_workers_are_padded_per_slot() -> None:
    plan = plan_eval(ENTRIES, world_size=3, num_workers=1, batch_size=1)
    assert [len(entries) for rank in plan for entries, _ in rank] == [2, 3, 3]
    assert [n for rank in plan for _, n in rank] == [3, 3, 3]
    plan = plan_eval(ENTRIES, world_size=2, num_workers=3, batch_size=1)
    # readers 0..5 (rank * 3 + worker) take 1, 1, 2, 1, 1, 2 clips
    assert [[len(entries) for entries, _ in rank] for rank in plan] == [[1, 1, 2], [1, 1, 2]]
    assert [[n for _, n in rank] for rank in plan] == [[1, 1, 2], [1, 1, 2]]


@pytest.mark.parametrize(("world_size", "workers"), [(1, 1), (2, 2), (3, 1), (5, 2), (8, 2)])
def test_every_clip_is_planned_exactly_once_and_every_rank_yields_as_many(
    world_size: int, workers: int
) -> None:
    plan = plan_eval(ENTRIES, world_size, workers, batch_size=2)
    assert [entry for rank in plan for entries, _ in rank for entry in entries] == ENTRIES
    assert len({sum(n for _, n in rank) for rank in plan}) == 1
    for rank in plan:
        assert all(n % 2 == 0 and n >= len(entries) for entries, n in rank)


def test_one_shard_on_two_ranks_of_two_workers_splits_its_clips() -> None:
    one_shard = ENTRIES[:3]  # s0's three clips for 4 readers
    plan = plan_eval(one_shard, world_size=2, num_workers=2, batch_size=1)
    assert [[_keys(entries) for entries, _ in rank] for rank in plan] == [
        [[], ["s0c0"]],
        [["s0c1"], ["s0c2"]],
    ]
    assert [[n for _, n in rank] for rank in plan] == [[1, 1], [1, 1]]  # rank 0 worker 0 pads


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_validation_sees_every_clip_once_and_ranks_stay_in_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, world_size: int, num_workers: int
) -> None:
    pattern, keys = write_set(tmp_path, "toy", [3, 1, 2, 1, 1, 2, 1], frames=2)
    seen: list[str] = []
    batches_per_rank, padding = [], 0
    for rank in range(world_size):
        set_rank(monkeypatch, rank, world_size)
        dm = ClipDataModule(
            val_shards=pattern, eval_short_side=28, num_workers=num_workers, eval_batch_size=1
        )
        dm.setup("validate")
        batches = loader_batches(dm.val_dataloader())
        batches_per_rank.append(len(batches))
        for batch in batches:
            if batch["is_padding"][0]:
                padding += 1
            else:
                seen += batch["key"]
            assert batch["image"].shape == (1, 2, 3, 28, 42)  # resize_shape(32, 48, 28)
            assert batch["inverse_depth"].shape == (1, 2, HEIGHT, WIDTH)  # native depth
    assert sorted(seen) == sorted(keys) and len(set(seen)) == len(seen)
    assert len(set(batches_per_rank)) == 1
    assert padding == world_size * batches_per_rank[0] - len(keys) > 0


@pytest.mark.parametrize(
    ("clips_per_shard", "split"), [([5], "val"), ([3], "test"), ([2, 1, 2], "predict")]
)
def test_one_or_three_shards_on_two_ranks_of_two_workers_give_every_clip_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clips_per_shard: list[int], split: str
) -> None:
    """Fewer shards than ranks x workers: clips, not shards, are split between the readers."""
    pattern, keys = write_set(tmp_path, "toy", clips_per_shard, frames=2)
    seen: list[str] = []
    batches_per_rank, padding = [], 0
    for rank in range(2):
        set_rank(monkeypatch, rank, 2)
        dm = ClipDataModule(**{f"{split}_shards": pattern}, eval_short_side=28, num_workers=2)
        dm.setup({"val": "validate"}.get(split, split))
        batches = loader_batches(getattr(dm, f"{split}_dataloader")())
        batches_per_rank.append(len(batches))
        for batch in batches:
            if batch["is_padding"][0]:
                padding += 1
                continue
            seen += batch["key"]
            assert batch["image"].shape == (1, 2, 3, 28, 42)  # resize_shape(32, 48, 28)
            assert batch["inverse_depth"].shape == (1, 2, HEIGHT, WIDTH)  # native depth
    assert sorted(seen) == sorted(keys) and len(set(seen)) == len(seen)
    assert len(set(batches_per_rank)) == 1
    assert padding == 2 * batches_per_rank[0] - len(keys) == 1  # 4 readers, 5 or 3 clips


def test_evaluation_ships_uint8_frames_that_finish_to_the_network_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, HEIGHT, WIDTH, 3), dtype=np.uint8)  # textured
    depth_m = np.full((3, HEIGHT, WIDTH), 2.0, np.float32)
    clip = Clip(make_key("toy", "tex", 0), make_meta("toy", "tex", [0, 1, 2]), frames, depth_m)
    with ClipShardWriter(str(tmp_path / "tex-%06d.tar"), 1) as writer:
        writer.write(clip)
    shard = str(tmp_path / "tex-000000.tar")
    dm = ClipDataModule(val_shards=shard, num_workers=0, eval_short_side=28)
    dm.setup("validate")
    (shipped,) = list(dm.val_dataloader())
    assert shipped["image"].dtype == torch.uint8 and shipped["image"].shape == (1, 3, 3, 28, 42)
    assert shipped["colour"].tolist() == [[0.0, 1.0, 1.0, 0.0]]  # no jitter in evaluation
    assert shipped["depth"].dtype == torch.float16 and shipped["depth"].shape == (1, 3, 32, 48)
    finished = finish_batch(shipped)
    assert torch.equal(finished["image"][0], shipped["image"][0].float() / 255)
    # the float bicubic resize of the decoded frames, rounded to the nearest uint8 level
    (raw,) = list(read_shard(shard, SkipCounter().skip))
    decoded = torch.from_numpy(decode_clip(raw).frames).permute(0, 3, 1, 2)
    expected = network_frames(decoded, 28)
    error = (finished["image"][0] - expected).abs()
    assert 0 < float(error.max()) <= 0.5 / 255 + 1e-6
    assert finished["inverse_depth"].shape == finished["valid"].shape == (1, 3, HEIGHT, WIDTH)
    assert torch.all(finished["inverse_depth"] == 0.5) and finished["valid"].all()


def test_bad_validation_sample_is_skipped_and_replaced_by_padding(tmp_path: Path) -> None:
    good, bad = grey_clip("toy", "good", 2), grey_clip("toy", "bad", 2)
    write_without_depth(tmp_path / "a.tar", good, bad)
    other, worse = grey_clip("toy", "other", 2), grey_clip("toy", "worse", 2)
    write_without_depth(tmp_path / "b.tar", other, worse)
    dm = ClipDataModule(val_shards=str(tmp_path / "{a,b}.tar"), num_workers=0, eval_short_side=28)
    dm.setup("validate")
    with pytest.warns(BadSampleWarning) as record:
        batches = loader_batches(dm.val_dataloader())
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "toy_bad_000000" in messages[0] and "a.tar" in messages[0]
    assert "toy_worse_000000" in messages[1] and "b.tar" in messages[1]
    assert len(batches) == 4  # 4 clips counted from the tar headers, 2 of them unreadable
    assert [b["key"][0] for b in batches if not b["is_padding"][0]] == [
        good.key,
        "toy_other_000000",
    ]
    assert sum(int(b["skipped"].sum()) for b in batches) == 2


def _ddp_validation_worker(
    rank: int, world_size: int, pattern: str, port: int, out: str, num_workers: int
) -> None:
    """One rank: a collective per validation batch, as sync_dist logging does."""
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    dm = ClipDataModule(val_shards=pattern, num_workers=num_workers, eval_short_side=28)
    dm.setup("validate")
    keys = []
    for batch in dm.val_dataloader():
        step = torch.ones(())
        dist.all_reduce(step)  # hangs if one rank runs out of batches first
        keys += [
            k for k, p in zip(batch["key"], batch["is_padding"].tolist(), strict=True) if not p
        ]
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, keys)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize(("clips_per_shard", "num_workers"), [([3, 1, 1], 1), ([5], 2)])
def test_real_ddp_validation_with_uneven_shards_does_not_hang(
    tmp_path: Path, clips_per_shard: list[int], num_workers: int
) -> None:
    import socket

    import torch.multiprocessing as mp

    pattern, keys = write_set(tmp_path, "toy", clips_per_shard, frames=2)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "keys.json"
    context = mp.spawn(
        _ddp_validation_worker,
        args=(2, pattern, port, str(out), num_workers),
        nprocs=2,
        join=False,
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("DDP validation did not finish in 120 s: the ranks hang")
    per_rank = json.loads(out.read_text())
    seen = [key for rank_keys in per_rank for key in rank_keys]
    assert sorted(seen) == sorted(keys) and len(set(seen)) == len(seen)
