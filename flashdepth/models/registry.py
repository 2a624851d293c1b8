"""Named presets of the zoo, timm-style: ``create_model(name, weights=None, **overrides)``.

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
flashdepth-full           ViT-S    1 (path_3)       Mamba2; + frozen ViT-L teacher, cross-attn
flashdepth-l-unet         ViT-L    3 (path_1)       Mamba2 (frozen, 518 px); + UNet upsampler
flashdepth-l-dagf         ViT-L    3 (path_1)       Mamba2 (frozen, 518 px); + DAGF upsampler
========================  =======  ===============  =====================================
"""

from __future__ import annotations

import fnmatch
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from flashdepth.fusion.dagf import DAGFUpsampler
from flashdepth.fusion.unet import UNetUpsampler
from flashdepth.models.depth_anything import DepthAnythingV2
from flashdepth.models.flashdepth import STAGE_NAMES, FlashDepth, released_mamba
from flashdepth.models.hybrid import FlashDepthHybrid
from flashdepth.models.upsampled import LowResolutionUpsampler
from flashdepth.temporal import GRUTemporal, IdentityTemporal


@dataclass(frozen=True)
class Preset:
    """One named architecture: a model class and its constructor arguments."""

    name: str
    description: str
    cls: type[nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, **overrides: Any) -> nn.Module:
        """The model with the preset's arguments, ``overrides`` taking precedence."""
        allowed = set(inspect.signature(self.cls).parameters)
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise TypeError(
                f"{self.name} ({self.cls.__name__}) has no argument(s) {unknown}; "
                f"its constructor takes {sorted(allowed)}"
            )
        return self.cls(**{**self.kwargs, **overrides})


_PRESETS: dict[str, Preset] = {}


def register_model(name: str, description: str, cls: type[nn.Module], **kwargs: Any) -> None:
    """Add a preset: ``cls(**kwargs)``; names are unique."""
    if name in _PRESETS:
        raise ValueError(f"a model preset named {name!r} is already registered")
    _PRESETS[name] = Preset(name, description, cls, kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the presets, optionally filtered by a shell pattern (``"flashdepth-*"``)."""
    names = sorted(_PRESETS)
    return names if pattern is None else fnmatch.filter(names, pattern)


def create_model(
    name: str,
    weights: str | Path | dict | None = None,
    strict: bool = True,
    **overrides: Any,
) -> nn.Module:
    """Build a preset and optionally load weights into it.

    Args:
        name: A name from :func:`list_models`.
        weights: A checkpoint path, a state dict, or the name of an entry of the weights
            registry (:func:`flashdepth.checkpoints.registry`, looked up in the weights
            folders, see :func:`flashdepth.checkpoints.resolve_weights`). Loaded with
            :func:`flashdepth.checkpoints.load_weights`.
        strict: Raise :class:`~flashdepth.checkpoints.CheckpointMismatchError` when the
            weights do not fit the preset; ``False`` loads the tensors that fit and keeps the
            initialisation of the rest.
        **overrides: Any constructor argument of the preset's class, e.g.
            ``create_model("flashdepth-full", teacher_resolution=518, num_blocks=2)``.

    Returns:
        The model in eval mode when weights were given, otherwise freshly initialised.
    """
    if name not in _PRESETS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    model = _PRESETS[name].build(**overrides)
    if weights is not None:
        from flashdepth.checkpoints import load_weights, resolve_weights

        load_weights(model, resolve_weights(weights), strict=strict)
        model.eval()
    return model


for _encoder, _label in (
    ("vits", "ViT-S"),
    ("vitb", "ViT-B"),
    ("vitl", "ViT-L"),
    ("vitg", "ViT-G"),
):
    register_model(
        f"depth-anything-v2-{_encoder}",
        f"Depth Anything V2 {_label}, per frame",
        DepthAnythingV2,
        encoder=_encoder,
    )

for _size, _encoder, _stage in (("s", "vits", 1), ("l", "vitl", 3)):
    _where = STAGE_NAMES[_stage]
    register_model(
        f"flashdepth-{_size}",
        f"FlashDepth-{_size.upper()}: {_encoder} + Mamba2 after {_where}",
        FlashDepth,
        encoder=_encoder,
        stage=_stage,
        temporal=released_mamba(_encoder),
    )
    register_model(
        f"flashdepth-{_size}-gru",
        f"FlashDepth-{_size.upper()} with a convolutional GRU instead of Mamba2 (ablation)",
        FlashDepth,
        encoder=_encoder,
        stage=_stage,
        temporal=GRUTemporal,
    )
    register_model(
        f"flashdepth-{_size}-none",
        f"FlashDepth-{_size.upper()} without temporal module (per-frame ablation)",
        FlashDepth,
        encoder=_encoder,
        stage=_stage,
        temporal=IdentityTemporal,
    )

register_model(
    "flashdepth-full",
    "FlashDepth Full: FlashDepth-S student + frozen ViT-L teacher (490 px), cross-attention "
    "fusion at path_4 (4 blocks)",
    FlashDepthHybrid,
)
register_model(
    "flashdepth-l-unet",
    "frozen FlashDepth-L at 518 px + UNet upsampler guided by the full-resolution frame",
    LowResolutionUpsampler,
    upsampler=UNetUpsampler,
)
register_model(
    "flashdepth-l-dagf",
    "frozen FlashDepth-L at 518 px + DAGF (deep attentional guided filtering) upsampler",
    LowResolutionUpsampler,
    upsampler=DAGFUpsampler,
)


def describe_models() -> list[tuple[str, str]]:
    """``(name, description)`` for every preset, sorted by name."""
    return [(name, _PRESETS[name].description) for name in list_models()]
