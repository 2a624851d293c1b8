"""Tests for datamodules.eval_stream: the shard plan that keeps ranks in step."""

from __future__ import annotations

import pytest

from datamodules.eval_stream import plan_eval

SHARDS = [f"s{i}.tar" for i in range(5)]
COUNTS = [3, 1, 2, 1, 1]


def test_ranks_take_every_world_size_th_shard_and_pad_to_the_same_count() -> None:
    plan = plan_eval(SHARDS, COUNTS, world_size=2, num_workers=1, batch_size=2)
    assert plan[0] == [(["s0.tar", "s2.tar", "s4.tar"], 6)]  # 6 clips, 3 batches
    assert plan[1] == [(["s1.tar", "s3.tar"], 6)]  # 2 clips + 4 padding
    assert sum(COUNTS) <= sum(n for rank in plan for _, n in rank)


def test_workers_split_a_ranks_shards_and_are_padded_per_worker_slot() -> None:
    plan = plan_eval(SHARDS, COUNTS, world_size=2, num_workers=2, batch_size=2)
    # rank 0: worker 0 gets s0, s4 (4 clips), worker 1 gets s2 (2); rank 1: s1 (1) and s3 (1)
    assert [shards for shards, _ in plan[0]] == [["s0.tar", "s4.tar"], ["s2.tar"]]
    assert [shards for shards, _ in plan[1]] == [["s1.tar"], ["s3.tar"]]
    assert [n for _, n in plan[0]] == [n for _, n in plan[1]] == [4, 2]


def test_every_shard_is_assigned_exactly_once() -> None:
    for world_size, workers in [(1, 1), (2, 2), (3, 1), (5, 1)]:
        plan = plan_eval(SHARDS, COUNTS, world_size, workers, batch_size=1)
        assigned = [s for rank in plan for shards, _ in rank for s in shards]
        assert sorted(assigned) == SHARDS


def test_too_few_shards_says_how_many_are_needed() -> None:
    with pytest.raises(ValueError, match=r"at least 6 shards are needed.*lower num_workers"):
        plan_eval(SHARDS, COUNTS, world_size=3, num_workers=2, batch_size=1)
