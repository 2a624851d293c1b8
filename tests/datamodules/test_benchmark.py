"""Tests for datamodules.benchmark: a tiny run prints both rates, their ratio, the device side."""

from __future__ import annotations

import re

import pytest

from datamodules.benchmark import main


def test_tiny_benchmark_prints_both_rates_their_ratio_and_the_device_side(
    capsys: pytest.CaptureFixture,
) -> None:
    argv = ["--height", "48", "--width", "64", "--frames", "6", "--clips", "2"]
    assert main([*argv, "--crop", "28", "28", "--clip-length", "3", "--seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    columns = r"\s+(\d+\.\d+)\s+(\d+\.\d+)\s*$"  # wall clock, CPU time
    bare = re.search(r"^bare decode .*?" + columns, out, re.MULTILINE)
    train = re.search(r"^training pipeline, 1 worker, crop 28x28" + columns, out, re.MULTILINE)
    ratio = re.search(r"^ratio training / bare" + columns, out, re.MULTILINE)
    assert bare and train and ratio, out
    for column in (1, 2):
        bare_rate, train_rate = float(bare[column]), float(train[column])
        assert bare_rate > 0 and train_rate > 0
        assert float(ratio[column]) == pytest.approx(train_rate / bare_rate, rel=0.02, abs=0.006)
    # the spread lists every round's rate; the best of them is the table's
    spread = re.search(r"^  training pipeline\s+(.*) \| (.*)$", out, re.MULTILINE)
    assert spread, out
    wall_rounds = [float(v) for v in spread[1].split()]
    assert len(wall_rounds) == 3 and max(wall_rounds) == pytest.approx(float(train[1]), abs=0.06)
    finishing = re.search(r"^  cpu, 1 thread\s+(\d+\.\d+) ms/frame$", out, re.MULTILINE)
    assert finishing and float(finishing[1]) > 0, out
