"""Clip shard format, WebDataset DataModules, dataset converters and synthetic scenes.

``ClipDataModule`` and ``SyntheticClipDataModule`` are imported lazily (they pull in
Lightning), so ``flashdepth data ...`` starts quickly.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "ClipDataModule": "datamodules.clips",
    "SyntheticClipDataModule": "datamodules.synthetic_clips",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
