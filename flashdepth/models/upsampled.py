"""A frozen low-resolution FlashDepth with a learned, image-guided upsampler.

The paper's super-resolution ablation (Unreal4K at 2044×1148) compares FlashDepth Full
with cheaper ways to reach 2K: FlashDepth-L on a downscaled frame, upsampled by a
**UNet** or by **DAGF** (deep attentional guided filtering) guided by the
full-resolution frame. This host runs the frozen low-resolution model and hands its
output to the upsampler (a :class:`~flashdepth.fusion.base.FusionModule` that
``produces == "depth"``)::

    frame ─ resize (low_resolution rule) ─> FlashDepth-L (frozen) ─> output_conv1 features,
    │                                                                 low-res depth
    └──────────────────────────────────────────────> upsampler ─> depth at full resolution

The low-resolution input follows the hybrid's teacher rule
(:func:`flashdepth.models.hybrid.low_resolution_size`) with ``resolution`` 518 by
default, the size FlashDepth-L was trained at. The low-resolution model never trains and
stays in eval mode; the streaming state is its temporal state (for the low-resolution
size). Only the upsampler is in a parameter group (``"fusion"``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flashdepth.fusion.base import FusionInputs, FusionModule
from flashdepth.models.contract import WeightPart
from flashdepth.models.depth_anything import check_clip, check_frame
from flashdepth.models.flashdepth import FlashDepth, TemporalFactory
from flashdepth.models.hybrid import (
    FusionFactory,
    check_resolution,
    low_resolution_size,
    resize_to_low_resolution,
)


class FrozenFlashDepth(FlashDepth):
    """FlashDepth whose parameters never train and which always stays in eval mode."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenFlashDepth:
        """Stay in eval mode whatever the host asks."""
        return super().train(False)


class LowResolutionUpsampler(nn.Module):
    """Frozen low-resolution FlashDepth + image-guided upsampler (UNet or DAGF).

    Args:
        upsampler: Factory of the upsampler, called as ``upsampler(1, head_width)`` with
            the low-resolution model's ``output_conv1`` width (128 for ViT-L), e.g.
            :class:`~flashdepth.fusion.unet.UNetUpsampler` or
            :class:`~flashdepth.fusion.dagf.DAGFUpsampler`.
        encoder: The low-resolution model's DINOv2 size (released FlashDepth-L: ``vitl``).
        temporal: Its temporal factory (``None``: the released Mamba configuration).
        stage: Its temporal stage (FlashDepth-L: 3, after path_1).
        pool_scale: Its pooling factor.
        resolution: Height of the low-resolution input for taller frames (multiple of 14).
    """

    def __init__(
        self,
        upsampler: FusionFactory,
        encoder: str = "vitl",
        temporal: TemporalFactory | None = None,
        stage: int = 3,
        pool_scale: float = 0.1,
        resolution: int = 518,
    ) -> None:
        super().__init__()
        check_resolution(resolution, "resolution")
        self.resolution = resolution
        self.low_res = FrozenFlashDepth(encoder, temporal, stage, pool_scale)
        self.fusion: FusionModule = upsampler(1, self.low_res.features // 2)
        if self.fusion.produces != "depth":
            raise ValueError(
                f"{type(self.fusion).__name__} produces {self.fusion.produces!r}; "
                "LowResolutionUpsampler needs an upsampler that produces depth (UNetUpsampler, "
                "DAGFUpsampler). Path_4 fusions belong in FlashDepthHybrid."
            )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Only the upsampler trains (``"fusion"``)."""
        return {"fusion": list(self.fusion.parameters())}

    def weight_parts(self) -> dict[str, WeightPart]:
        """``low_res``: a stage-1 FlashDepth-L (released ``.pth`` or our checkpoint)."""
        return {"low_res": WeightPart(prefix="low_res.")}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Nothing to recompute.

        The low-resolution model runs without autograd and the upsampler is small.
        """

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """The low-resolution model's state for frames of ``image_size`` (full resolution)."""
        low = None if image_size is None else low_resolution_size(*image_size, self.resolution)
        return self.low_res.init_state(batch_size, device, dtype, image_size=low)

    def step(self, frame: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame ``(B, 3, H, W)`` -> ``(inverse_depth (B, H, W), new_state)``."""
        check_frame(frame, type(self).__name__)
        depth, state = self.forward_with_state(frame.unsqueeze(1), state)
        return depth[:, 0], state

    def forward(self, clip: Tensor, state: Tensor | None = None) -> Tensor:
        """A clip ``(B, T, 3, H, W)`` -> ``(B, T, H, W)`` at full resolution."""
        check_clip(clip, type(self).__name__)
        if state is None:
            state = self.init_state(clip.shape[0], clip.device, image_size=clip.shape[-2:])
        return self.forward_with_state(clip, state)[0]

    def forward_with_state(self, clip: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Like :meth:`forward` from a given state, also returning the final state."""
        check_clip(clip, type(self).__name__)
        frames = clip.flatten(0, 1)  # (B, T, 3, H, W) -> (B*T, 3, H, W)
        small = resize_to_low_resolution(frames, self.resolution).unflatten(0, clip.shape[:2])
        with torch.no_grad():
            path_1, patch_h, patch_w, state = self.low_res.path_1_with_state(small, state)
            head = self.low_res.depth_head.head_features(path_1)
            low_depth = self.low_res.depth_head.depth_from_head_features(head, patch_h, patch_w)
        inputs = FusionInputs(frame=frames, context=head, low_res_depth=low_depth.squeeze(1))
        depth = self.fusion(inputs)  # (B*T, H, W)
        return depth.unflatten(0, clip.shape[:2]), state  # -> (B, T, H, W)
