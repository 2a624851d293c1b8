"""Streaming inference without Lightning: frame sources, a streaming predictor, depth sinks.

:func:`open_source` decodes a video file, an image sequence, a camera or a stream URL ahead
on a background thread; :class:`StreamingPredictor` turns frames into depth at the input
resolution through the model contract; :func:`make_sinks` writes EXR, 16-bit PNG, npy/npz
and mp4; :func:`run_stream` joins them with decoding, inference and writing overlapped. See
:mod:`flashdepth.inference.frames` for the data that flows between them. The command line is
``flashdepth stream`` (:mod:`flashdepth.inference.command`); the Lightning callback behind
``flashdepth predict`` is :class:`PredictionWriter` (imported lazily: it needs Lightning).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "DepthSink": "flashdepth.inference.frames",
    "Frame": "flashdepth.inference.frames",
    "FrameSource": "flashdepth.inference.frames",
    "VideoInfo": "flashdepth.inference.frames",
    "StreamingPredictor": "flashdepth.inference.predictor",
    "ClipPredictor": "flashdepth.inference.clip_predictor",
    "open_source": "flashdepth.inference.sources",
    "SourceError": "flashdepth.inference.sources",
    "make_sinks": "flashdepth.inference.sinks",
    "write_units": "flashdepth.inference.sinks",
    "completed": "flashdepth.inference.sinks",
    "run_stream": "flashdepth.inference.pipeline",
    "PredictionWriter": "flashdepth.inference.writer",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flashdepth.inference' has no attribute {name!r}")
