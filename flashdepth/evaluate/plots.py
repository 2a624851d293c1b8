"""PNG plots of every video: per-frame AbsRel and δ1, and the scale drift, one line per method.

For each protocol and video, under ``{out}/plots/{protocol}/``:

* ``{key}_frames.png``: AbsRel (top) and δ1 (bottom) of every frame, aligned with the video's
  one scale and shift, against the source frame number;
* ``{key}_scale_drift.png``: ``s_frame / s_video``, the least-squares scale that aligns each
  frame on its own (in disparity, over the pixels of the video's fit) relative to the video's
  scale. A temporally consistent method stays on the dashed line at 1 however long the video;
  a per-frame method wanders, because its scale changes from frame to frame. Frames without a
  pixel to fit leave a gap.

Drawn with Matplotlib's Agg canvas (no display, no global pyplot state: safe in any process).
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from flashdepth.evaluate.report import TITLES

#: Videos up to this many frames get a marker on every frame.
MARKERS_UP_TO = 60


def _values(values: list[float | None]) -> list[float]:
    """JSON numbers with ``None`` as NaN (a gap in the line)."""
    return [math.nan if value is None else value for value in values]


def _figure(rows: int) -> tuple[Figure, list]:
    figure = Figure(figsize=(8, 2.2 + 2.2 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return figure, list(axes)


def _lines(axis: Axes, frame_ids: list[int], series: dict[str, list[float | None]]) -> None:
    """One line per method."""
    marker = "o" if len(frame_ids) <= MARKERS_UP_TO else None
    for method, values in series.items():
        axis.plot(frame_ids, _values(values), label=method, marker=marker, markersize=3)
    axis.grid(alpha=0.3)


def plot_frames(
    path: Path, title: str, frame_ids: list[int], frames: dict[str, dict[str, list]]
) -> Figure:
    """Per-frame AbsRel and δ1 of one video.

    Args:
        path: The PNG to write.
        title: Figure title (video and protocol).
        frame_ids: Source frame number of each frame (x axis).
        frames: ``{method: {"abs_rel": [...], "delta1": [...]}}`` (``None`` = not scored).

    Returns:
        The figure written.
    """
    figure, axes = _figure(2)
    for axis, metric in zip(axes, ("abs_rel", "delta1"), strict=True):
        _lines(axis, frame_ids, {method: values[metric] for method, values in frames.items()})
        axis.set_ylabel(TITLES[metric])
    axes[0].set_title(title)
    axes[0].legend(loc="best", fontsize="small")
    axes[-1].set_xlabel("frame")
    figure.savefig(path, dpi=100)
    return figure


def plot_scale_drift(
    path: Path, title: str, frame_ids: list[int], drift: dict[str, list[float | None]]
) -> Figure:
    """Per-frame optimal scale relative to the video's scale, one line per method.

    Args:
        path: The PNG to write.
        title: Figure title (video and protocol).
        frame_ids: Source frame number of each frame (x axis).
        drift: ``{method: [s_frame / s_video per frame]}``.

    Returns:
        The figure written.
    """
    figure, (axis,) = _figure(1)
    axis.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    _lines(axis, frame_ids, drift)
    axis.set_ylabel("s_frame / s_video")
    axis.set_xlabel("frame")
    axis.set_title(title)
    axis.legend(loc="best", fontsize="small")
    figure.savefig(path, dpi=100)
    return figure


def write_plots(out: Path, records: dict[str, list[dict]], protocols: list[str]) -> list[Path]:
    """Both plots of every video under every protocol.

    Args:
        out: The ``--out`` folder (plots go to ``out/plots/{protocol}/``).
        records: ``{method: [per-video record, in ground-truth order]}``, same videos each.
        protocols: The protocols scored.

    Returns:
        The PNG files written.
    """
    written: list[Path] = []
    methods = list(records)
    for protocol in protocols:
        folder = out / "plots" / protocol
        folder.mkdir(parents=True, exist_ok=True)
        for per_method in zip(*(records[m] for m in methods), strict=True):
            first = per_method[0]
            title = f"{first['dataset']}/{first['scene']} ({protocol} protocol)"
            frames = {
                m: r["protocols"][protocol]["frames"]
                for m, r in zip(methods, per_method, strict=True)
            }
            paths = (
                folder / f"{first['key']}_frames.png",
                folder / f"{first['key']}_scale_drift.png",
            )
            plot_frames(paths[0], title, first["frame_ids"], frames)
            drift = {method: values["scale_drift"] for method, values in frames.items()}
            plot_scale_drift(paths[1], title, first["frame_ids"], drift)
            written += paths
    return written
