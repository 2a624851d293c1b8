"""Fusion strategies: combine a low-resolution model's output with the full-resolution frame.

Each implements :class:`FusionModule` (one file each) and is chosen in a recipe's YAML:
:class:`CrossAttentionFusion` (FlashDepth Full), :class:`UNetUpsampler` and
:class:`DAGFUpsampler` (the paper's super-resolution ablation).
"""

from flashdepth.fusion.base import FusionInputs, FusionModule
from flashdepth.fusion.cross_attention import CrossAttentionFusion
from flashdepth.fusion.dagf import DAGFUpsampler
from flashdepth.fusion.unet import UNetUpsampler

__all__ = [
    "CrossAttentionFusion",
    "DAGFUpsampler",
    "FusionInputs",
    "FusionModule",
    "UNetUpsampler",
]
