"""Streaming inference without Lightning: frame sources, a streaming predictor, depth sinks.

See :mod:`flashdepth.inference.frames` for the data that flows between them. The Lightning
callback behind ``flashdepth predict`` is :class:`PredictionWriter`.
"""

from flashdepth.inference.frames import DepthSink, Frame, FrameSource, VideoInfo
from flashdepth.inference.writer import PredictionWriter

__all__ = ["DepthSink", "Frame", "FrameSource", "PredictionWriter", "VideoInfo"]
