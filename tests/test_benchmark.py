"""``flashdepth benchmark`` prints both tables; no timing is asserted."""

from __future__ import annotations

import re

import pytest

from flashdepth.benchmark import benchmark_scan, main


def test_scan_benchmark_compares_equal_results() -> None:
    result = benchmark_scan(tokens=70, repeats=1)
    assert result["max_abs_diff"] < 1e-3
    assert result["speedup"] == pytest.approx(result["recurrent_ms"] / result["chunked_ms"])


def test_main_prints_stream_and_scan_tables(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--frames", "25", "--window", "10", "--height", "28", "--width", "42"]
    assert main([*args, "--no-progress"]) == 0
    out = capsys.readouterr().out
    for row in ("median latency, frames 5-15", "last 10 frames", "late / early", "growth"):
        assert row in out
    assert re.search(r"speed-up\s+\d+\.\d+x", out)
    assert re.search(r"host RSS at the end\s+\d+\.\d MiB", out)


def test_per_frame_model_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["stream", "--model", "depth-anything-v2-vits", "--frames", "25", "--window", "10"])
    assert caught.value.code == 2
    assert "per-frame model" in capsys.readouterr().err
