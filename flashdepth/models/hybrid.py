"""FlashDepth Full: the hybrid Small–Large model that runs at 2K.

A **student** FlashDepth-S sees the full-resolution frame (e.g. 2044×1148); a frozen
**teacher** (ViT-L + DPT-L, the stage-1 FlashDepth-L weights without its temporal
module) sees the frame downscaled. Only the deepest DPT stage is fused: the student's
path_4 tokens attend to the teacher's path_4 tokens (cross-attention, zero-initialised
so the untrained hybrid is exactly FlashDepth-S). The student then continues::

    student:  encode -> reassemble -> path_4 ─┐
    teacher:  resize -> ViT-L -> path_4 only ─┴> fusion -> path_3 -> temporal -> path_2
                                                 -> path_1 -> head

**Teacher input** (the released rule): when the frame height ``H`` exceeds
``teacher_resolution`` (released 490, the paper's text 518), the normalised frame is
resized bilinearly (align_corners=True) to height ``teacher_resolution`` and width
``int(teacher_resolution / H * W) // 14 * 14`` (2044×1148 -> 868×490); otherwise the
teacher sees the frame as it is. The rule reads the height whatever the orientation:
a portrait 1148×2044 (W×H) frame gives the teacher 266×490 (at least 14 px wide).

The teacher computes only what path_4 needs (every ViT block, then one projection,
resize, 3x3 conv and ``refinenet4``), never has gradients and stays in eval mode
whatever mode the model is put in. The streaming state is the student's temporal state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flashdepth.fusion.base import FusionInputs, FusionModule
from flashdepth.fusion.cross_attention import CrossAttentionFusion
from flashdepth.models.contract import WeightPart
from flashdepth.models.depth_anything import DepthAnythingV2
from flashdepth.models.dpt import PATCH_SIZE
from flashdepth.models.flashdepth import TEMPORAL_PREFIXES, FlashDepth, TemporalFactory

#: A fusion without its widths: ``factory(dim, context_dim) -> FusionModule``.
FusionFactory = Callable[[int, int], FusionModule]


def low_resolution_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """``(h, w)`` the teacher (or any low-resolution model) sees for an ``H×W`` input.

    Heights above ``resolution`` are brought to ``resolution`` and the width to
    ``int(resolution / H * W) // 14 * 14`` (at least 14); smaller frames are kept.
    """
    if height <= resolution:
        return height, width
    return resolution, max(PATCH_SIZE, int(resolution / height * width) // PATCH_SIZE * PATCH_SIZE)


def resize_to_low_resolution(frames: Tensor, resolution: int) -> Tensor:
    """Apply :func:`low_resolution_size` to normalised frames ``(N, 3, H, W)``.

    The resize is bilinear, with align_corners=True.
    """
    size = low_resolution_size(frames.shape[-2], frames.shape[-1], resolution)
    if size == tuple(frames.shape[-2:]):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=True)


def check_resolution(resolution: int, name: str) -> None:
    """A low-resolution height must be a positive multiple of the patch size."""
    if resolution <= 0 or resolution % PATCH_SIZE:
        raise ValueError(
            f"{name} must be a positive multiple of {PATCH_SIZE} (e.g. 490 or 518), "
            f"got {resolution}"
        )


class FrozenTeacher(DepthAnythingV2):
    """Depth Anything V2 used as a frozen teacher: parameters never train, always eval."""

    def __init__(self, encoder: str = "vitl") -> None:
        super().__init__(encoder)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Stay in eval mode whatever the host asks."""
        return super().train(False)

    def path_4(self, frames: Tensor) -> Tensor:
        """The teacher's DPT path_4 ``(N, C, h/14, w/14)`` of normalised frames, no autograd."""
        patch_h, patch_w = frames.shape[-2] // PATCH_SIZE, frames.shape[-1] // PATCH_SIZE
        deepest = self.pretrained.layer_indices[-1]
        with torch.no_grad():
            (tokens,) = self.pretrained.get_intermediate_layers(frames, indices=[deepest])
            return self.depth_head.path_4_from_deepest(tokens, patch_h, patch_w)


class FlashDepthHybrid(FlashDepth):
    """FlashDepth Full: a FlashDepth student fused with a frozen large teacher at path_4.

    Args:
        encoder: The student's DINOv2 size (released: ``vits``).
        temporal: Factory of the student's temporal component (``None``: released Mamba).
        stage: DPT stage of the student's temporal component (released: 1, after path_3).
        pool_scale: Pooling factor before the temporal component.
        teacher_encoder: The teacher's DINOv2 size (released: ``vitl``).
        teacher_resolution: Height of the teacher's input for taller frames (released 490;
            the paper's text says 518). A multiple of 14.
        num_blocks: Cross-attention blocks of the default fusion (released 4, paper 2).
        fusion: Factory of another fusion that refines path_4 (``produces == "path_4"``),
            called as ``fusion(student_width, teacher_width)``; ``None`` builds
            :class:`~flashdepth.fusion.cross_attention.CrossAttentionFusion` with
            ``num_blocks`` blocks.
    """

    def __init__(
        self,
        encoder: str = "vits",
        temporal: TemporalFactory | None = None,
        stage: int = 1,
        pool_scale: float = 0.1,
        teacher_encoder: str = "vitl",
        teacher_resolution: int = 490,
        num_blocks: int = 4,
        fusion: FusionFactory | None = None,
    ) -> None:
        super().__init__(encoder, temporal, stage, pool_scale)
        check_resolution(teacher_resolution, "teacher_resolution")
        if fusion is not None and num_blocks != 4:
            raise ValueError(
                "num_blocks configures the default cross-attention fusion; with a fusion "
                "factory, give the block count in the fusion's own arguments"
            )
        self.teacher_resolution = teacher_resolution
        self.teacher = FrozenTeacher(teacher_encoder)
        if fusion is None:
            self.fusion: FusionModule = CrossAttentionFusion(
                self.features, self.teacher.features, num_blocks=num_blocks
            )
        else:
            self.fusion = fusion(self.features, self.teacher.features)
        if self.fusion.produces != "path_4":
            raise ValueError(
                f"{type(self.fusion).__name__} produces {self.fusion.produces!r}; the hybrid "
                "needs a fusion that refines the student's path_4 (e.g. CrossAttentionFusion). "
                "Upsamplers belong in LowResolutionUpsampler."
            )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The student's groups and ``"fusion"``; the frozen teacher is in none."""
        return {**super().parameter_groups(), "fusion": list(self.fusion.parameters())}

    def weight_parts(self) -> dict[str, WeightPart]:
        """The parts that load their weights separately: ``student`` and ``teacher``.

        ``student`` is a stage-1 FlashDepth (the fusion keeps its identity initialisation);
        ``teacher`` is a stage-1 FlashDepth-L or DAv2-L (its temporal module is unused).
        """
        return {
            "student": WeightPart(exclude=("teacher.",), keeps_initialisation=("fusion.",)),
            "teacher": WeightPart(prefix="teacher.", ignores=TEMPORAL_PREFIXES),
        }

    def teacher_input(self, frames: Tensor) -> Tensor:
        """The teacher's view of normalised frames ``(N, 3, H, W)`` (module docstring)."""
        return resize_to_low_resolution(frames, self.teacher_resolution)

    def fuse_path_4(self, path_4: Tensor, frames: Tensor, patch_h: int, patch_w: int) -> Tensor:
        """Refine the student's path_4 with the teacher's path_4 (cross-attention)."""
        context = self.teacher.path_4(self.teacher_input(frames))
        return self.fusion(FusionInputs(frame=frames, context=context, path_4=path_4))
