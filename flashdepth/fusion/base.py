"""The interface every fusion strategy implements.

A fusion strategy combines what a **low-resolution** depth model computed (features
and/or depth of the frame downscaled) with the **full-resolution** frame. It lives at
the model level, not inside the DPT: the host model (:class:`~flashdepth.models.hybrid.
FlashDepthHybrid` or :class:`~flashdepth.models.upsampled.LowResolutionUpsampler`) runs
the low-resolution model, gathers a :class:`FusionInputs` and calls the strategy once
per frame batch. Two kinds exist, told apart by :attr:`FusionModule.produces`:

``"path_4"``
    Refines the full-resolution student's deepest DPT features (cross-attention of
    FlashDepth Full); the student then continues its decoder.
``"depth"``
    Produces the full-resolution inverse depth itself (UNet upsampler, DAGF).

Components are injected into their host as factories ``Callable[[int, int],
FusionModule]`` called as ``factory(dim, context_dim)``: ``dim`` is the width of what
the strategy outputs (the student's DPT width for ``"path_4"``, 1 for ``"depth"``),
``context_dim`` the channels of the low-resolution features it receives. A recipe
therefore never states a width.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn


@dataclass
class FusionInputs:
    """What a fusion strategy sees for ``N`` frames (``N = B*T`` in clip form).

    Attributes:
        frame: ``(N, 3, H, W)`` full-resolution frame, ImageNet-normalised.
        context: ``(N, context_dim, h, w)`` features of the low-resolution model: the
            teacher's DPT path_4 for cross-attention, FlashDepth-L's ``output_conv1(path_1)``
            for the upsamplers.
        low_res_depth: ``(N, h', w')`` inverse depth of the low-resolution model (×100
            scale, ≈ 100/m for our recipes), or ``None`` where the host does not compute it.
        path_4: ``(N, dim, H/14, W/14)`` the full-resolution student's DPT path_4, or
            ``None`` for hosts without a student.
    """

    frame: Tensor
    context: Tensor
    low_res_depth: Tensor | None = None
    path_4: Tensor | None = None


class FusionModule(nn.Module, ABC):
    """Base class of the fusion strategies.

    Args:
        dim: Channels of the output (student DPT width for ``"path_4"``; 1 for ``"depth"``).
        context_dim: Channels of :attr:`FusionInputs.context`.
    """

    #: What :meth:`forward` returns: refined ``"path_4"`` features or ``"depth"``.
    produces: ClassVar[str]

    def __init__(self, dim: int, context_dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.context_dim = context_dim

    @abstractmethod
    def forward(self, inputs: FusionInputs) -> Tensor:
        """Fuse one batch of frames.

        Returns:
            ``(N, dim, H/14, W/14)`` refined path_4 when :attr:`produces` is ``"path_4"``;
            ``(N, H, W)`` non-negative inverse depth when it is ``"depth"``.
        """
