"""The per-frame and scale-drift plots: one line per method, the numbers of the records."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from flashdepth.evaluate.plots import plot_frames, plot_scale_drift, write_plots


def _record(method: str, key: str, drift: list[float | None]) -> dict:
    frames = {"abs_rel": [0.1, 0.2, None], "delta1": [0.9, 0.8, None], "scale_drift": drift}
    scores = {"frames": frames}
    return {
        "method": method,
        "key": key,
        "dataset": "synthetic",
        "scene": key,
        "frame_ids": [4, 5, 6],
        "protocols": {"flashdepth": scores, "vda": scores},
    }


def test_scale_drift_draws_each_method_and_the_line_at_one(tmp_path) -> None:
    drift = {"ours": [1.0, 1.01, 0.99], "per-frame": [1.2, None, 0.7]}
    figure = plot_scale_drift(tmp_path / "drift.png", "a video", [4, 5, 6], drift)
    (axis,) = figure.axes
    reference, ours, per_frame = axis.get_lines()
    assert list(reference.get_ydata()) == [1.0, 1.0]
    assert list(ours.get_xdata()) == [4, 5, 6] and list(ours.get_ydata()) == [1.0, 1.01, 0.99]
    values = list(per_frame.get_ydata())
    assert values[0] == 1.2 and math.isnan(values[1]) and values[2] == 0.7  # a gap
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["ours", "per-frame"]
    with Image.open(tmp_path / "drift.png") as image:
        assert image.size == (800, 440)


def test_frames_plot_has_absrel_over_delta1(tmp_path) -> None:
    frames = {"ours": {"abs_rel": [0.1, 0.3], "delta1": [0.9, None]}}
    figure = plot_frames(tmp_path / "frames.png", "a video", [0, 1], frames)
    top, bottom = figure.axes
    assert top.get_ylabel() == "AbsRel ↓" and bottom.get_ylabel() == "δ1 ↑"
    assert list(top.get_lines()[0].get_ydata()) == [0.1, 0.3]
    assert np.isnan(bottom.get_lines()[0].get_ydata()[1])


def test_write_plots_makes_two_pngs_per_video_and_protocol(tmp_path) -> None:
    records = {
        "ours": [_record("ours", "a", [1.0, 1.0, 1.0]), _record("ours", "b", [1.0, 0.9, 1.1])],
        "dav2": [_record("dav2", "a", [1.3, 0.8, 1.0]), _record("dav2", "b", [0.5, 1.0, 2.0])],
    }
    written = write_plots(tmp_path, records, ["flashdepth", "vda"])
    names = sorted(str(path.relative_to(tmp_path)) for path in written)
    assert names == sorted(
        f"plots/{protocol}/{key}_{kind}.png"
        for protocol in ("flashdepth", "vda")
        for key in "ab"
        for kind in ("frames", "scale_drift")
    )
    assert all(path.stat().st_size > 1000 for path in written)
