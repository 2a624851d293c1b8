"""Named presets of the zoo, timm-style: ``create_model(name, weights=None)``.

========================  =======  ===============  =====================================
name                      encoder  temporal stage   temporal component
========================  =======  ===============  =====================================
depth-anything-v2-vits    ViT-S    —                — (per-frame DAv2)
depth-anything-v2-vitb    ViT-B    —                —
depth-anything-v2-vitl    ViT-L    —                —
depth-anything-v2-vitg    ViT-G    —                —
flashdepth-s              ViT-S    1 (path_3)       Mamba2 ×4, expand 4, head dim 32
flashdepth-s-gru          ViT-S    1 (path_3)       convolutional GRU
flashdepth-s-none         ViT-S    1 (path_3)       identity (per-frame baseline)
flashdepth-l              ViT-L    3 (path_1)       Mamba2 ×4, expand 2, head dim 64
flashdepth-l-gru          ViT-L    3 (path_1)       convolutional GRU
flashdepth-l-none         ViT-L    3 (path_1)       identity
========================  =======  ===============  =====================================
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from flashdepth.models.depth_anything import DepthAnythingV2
from flashdepth.models.encoder import vit_config
from flashdepth.models.flashdepth import STAGE_NAMES, FlashDepth, released_mamba
from flashdepth.temporal import GRUTemporal, IdentityTemporal, TemporalModule


@dataclass(frozen=True)
class Preset:
    """One named architecture."""

    name: str
    description: str
    build: Callable[[], nn.Module]


_PRESETS: dict[str, Preset] = {}


def register_model(name: str, description: str, build: Callable[[], nn.Module]) -> None:
    """Add a preset; names are unique."""
    if name in _PRESETS:
        raise ValueError(f"a model preset named {name!r} is already registered")
    _PRESETS[name] = Preset(name, description, build)


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the presets, optionally filtered by a shell pattern (``"flashdepth-*"``)."""
    names = sorted(_PRESETS)
    return names if pattern is None else fnmatch.filter(names, pattern)


def create_model(name: str, weights: str | Path | dict | None = None) -> nn.Module:
    """Build a preset and optionally load weights into it.

    Args:
        name: A name from :func:`list_models`.
        weights: A checkpoint path, a state dict, or the name of an entry of
            ``checkpoints/registry.json`` (looked up in the weights folder, see
            :func:`flashdepth.checkpoints.resolve_weights`). Loaded strictly with
            :func:`flashdepth.checkpoints.load_weights`.

    Returns:
        The model in eval mode when weights were given, otherwise freshly initialised.
    """
    if name not in _PRESETS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _PRESETS[name].build()
    if weights is not None:
        from flashdepth.checkpoints import load_weights, resolve_weights

        load_weights(model, resolve_weights(weights))
        model.eval()
    return model


def _flashdepth(encoder: str, stage: int, kind: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        dim = vit_config(encoder).dpt_features
        temporal: TemporalModule
        if kind == "mamba":
            temporal = released_mamba(encoder, dim)
        elif kind == "gru":
            temporal = GRUTemporal(dim)
        else:
            temporal = IdentityTemporal(dim)
        return FlashDepth(encoder=encoder, temporal=temporal, stage=stage)

    return build


def _depth_anything(encoder: str) -> Callable[[], nn.Module]:
    return lambda: DepthAnythingV2(encoder)


for _encoder, _label in (
    ("vits", "ViT-S"),
    ("vitb", "ViT-B"),
    ("vitl", "ViT-L"),
    ("vitg", "ViT-G"),
):
    register_model(
        f"depth-anything-v2-{_encoder}",
        f"Depth Anything V2 {_label}, per frame",
        _depth_anything(_encoder),
    )

for _size, _encoder, _stage in (("s", "vits", 1), ("l", "vitl", 3)):
    register_model(
        f"flashdepth-{_size}",
        f"FlashDepth-{_size.upper()}: {_encoder} + Mamba2 after {STAGE_NAMES[_stage]}",
        _flashdepth(_encoder, _stage, "mamba"),
    )
    register_model(
        f"flashdepth-{_size}-gru",
        f"FlashDepth-{_size.upper()} with a convolutional GRU instead of Mamba2 (ablation)",
        _flashdepth(_encoder, _stage, "gru"),
    )
    register_model(
        f"flashdepth-{_size}-none",
        f"FlashDepth-{_size.upper()} without temporal module (per-frame ablation)",
        _flashdepth(_encoder, _stage, "none"),
    )


def describe_models() -> list[tuple[str, str]]:
    """``(name, description)`` for every preset, sorted by name."""
    return [(name, _PRESETS[name].description) for name in list_models()]
