"""Tests for datamodules.benchmark: a tiny run prints both rates and their ratio."""

from __future__ import annotations

import re

import pytest

from datamodules.benchmark import main


def test_tiny_benchmark_prints_both_rates_and_their_ratio(capsys: pytest.CaptureFixture) -> None:
    argv = ["--height", "48", "--width", "64", "--frames", "6", "--clips", "2"]
    assert main([*argv, "--crop", "28", "28", "--clip-length", "3", "--seconds", "0.3"]) == 0
    out = capsys.readouterr().out
    number = r"\s+(\d+\.\d+)\s*$"
    bare = re.search(r"^bare decode .*?" + number, out, re.MULTILINE)
    train = re.search(r"^training pipeline, 1 worker, crop 28x28" + number, out, re.MULTILINE)
    ratio = re.search(r"^ratio training / bare" + number, out, re.MULTILINE)
    assert bare and train and ratio, out
    bare_rate, train_rate = float(bare[1]), float(train[1])
    assert bare_rate > 0 and train_rate > 0
    assert float(ratio[1]) == pytest.approx(train_rate / bare_rate, rel=0.02, abs=0.006)
