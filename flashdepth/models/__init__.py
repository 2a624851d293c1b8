"""Plain-PyTorch networks of the zoo (no Lightning imports).

``DinoV2Encoder`` → ``DPTDecoder`` → ``DepthAnythingV2``; ``FlashDepth`` adds a
temporal component after one DPT stage; ``FlashDepthHybrid`` (FlashDepth Full) fuses a
frozen large teacher into it; ``LowResolutionUpsampler`` upsamples a frozen low-resolution
FlashDepth. Every model satisfies ``StreamingDepthModel`` (:mod:`flashdepth.models.contract`).
Presets live in :mod:`flashdepth.models.registry`.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "DinoV2Encoder": "flashdepth.models.encoder",
    "DPTDecoder": "flashdepth.models.dpt",
    "DepthAnythingV2": "flashdepth.models.depth_anything",
    "FlashDepth": "flashdepth.models.flashdepth",
    "FlashDepthHybrid": "flashdepth.models.hybrid",
    "LowResolutionUpsampler": "flashdepth.models.upsampled",
    "StreamingDepthModel": "flashdepth.models.contract",
    "create_model": "flashdepth.models.registry",
    "list_models": "flashdepth.models.registry",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flashdepth.models' has no attribute {name!r}")
