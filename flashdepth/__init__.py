"""FlashDepth model zoo: real-time streaming video depth on PyTorch Lightning.

The public entry points are imported lazily so that ``import flashdepth`` (and
the CLI's start-up) does not pay for timm and the models until they are used::

    import flashdepth

    model = flashdepth.create_model("flashdepth-s")
    print(flashdepth.list_models())
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "flashdepth.models.registry",
    "list_models": "flashdepth.models.registry",
    "load_weights": "flashdepth.checkpoints",
    "DepthAnythingV2": "flashdepth.models.depth_anything",
    "FlashDepth": "flashdepth.models.flashdepth",
    "FlashDepthHybrid": "flashdepth.models.hybrid",
    "StreamingDepthModel": "flashdepth.models.contract",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flashdepth' has no attribute {name!r}")
