"""Depth Anything V2: DINOv2 encoder + DPT decoder, checkpoint-compatible.

The module names ``pretrained`` and ``depth_head`` make the ``state_dict`` keys those
of the official ``depth_anything_v2_<encoder>.pth`` files, which load with
``load_state_dict(torch.load(path, weights_only=True))`` (strict; the unused
``pretrained.mask_token`` is dropped on load).

Output: relative **inverse depth** (disparity), non-negative, in the arbitrary scale
of the training data (about 100/m for FlashDepth's metric recipes; DAv2's own
weights are affine-invariant: fit scale and shift before reading it as 1/m).

The model satisfies the zoo's :class:`~flashdepth.models.contract.StreamingDepthModel`
contract trivially: its state is an empty ``(B, 0)`` tensor and every frame is
processed on its own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flashdepth.models.contract import WeightPart
from flashdepth.models.dpt import DPTDecoder
from flashdepth.models.encoder import PATCH_SIZE, DinoV2Encoder, check_input_size, vit_config


def check_clip(clip: Tensor, model: str) -> None:
    """Raise a clear error unless ``clip`` is a ``(B, T, 3, H, W)`` clip."""
    if clip.ndim != 5 or clip.shape[2] != 3:
        raise ValueError(
            f"{model} takes a clip (B, T, 3, H, W), got shape {tuple(clip.shape)}; "
            "use step(frame, state) for single frames (B, 3, H, W)"
        )


def check_frame(frame: Tensor, model: str) -> None:
    """Raise a clear error unless ``frame`` is a ``(B, 3, H, W)`` frame batch."""
    if frame.ndim != 4 or frame.shape[1] != 3:
        raise ValueError(
            f"{model}.step() takes one frame (B, 3, H, W), got shape {tuple(frame.shape)}"
        )


class DepthAnythingV2(nn.Module):
    """Per-frame relative inverse depth with Depth Anything V2.

    ``forward`` takes a clip ``(B, T, 3, H, W)`` like every model of the zoo, or a single
    image batch ``(B, 3, H, W)`` as the official model does. Subclasses (FlashDepth)
    reuse :meth:`encode_layers` and the decoder stages.

    Args:
        encoder: ``"vits"``, ``"vitb"``, ``"vitl"`` or ``"vitg"``; ``"vitt"`` is a tiny size
            for tests and debugging that no released checkpoint fits
            (:data:`~flashdepth.models.encoder.TEST_VIT_CONFIGS`).
    """

    def __init__(self, encoder: str = "vits") -> None:
        super().__init__()
        config = vit_config(encoder)
        self.encoder_name = encoder
        self.features = config.dpt_features
        self.pretrained = DinoV2Encoder(encoder)
        self.depth_head = DPTDecoder(config.embed_dim, config.dpt_features, config.dpt_out_channels)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute ViT blocks and DPT fusion stages in the backward pass (saves memory)."""
        self.pretrained.set_grad_checkpointing(enable)
        self.depth_head.set_grad_checkpointing(enable)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """``{"vit": ViT parameters, "dpt": decoder parameters}``."""
        return {
            "vit": list(self.pretrained.parameters()),
            "dpt": list(self.depth_head.parameters()),
        }

    def weight_parts(self) -> dict[str, WeightPart]:
        """One source of weights: none to name."""
        return {}

    def encode(self, image: Tensor) -> tuple[list[Tensor], int, int]:
        """Run the ViT and return the four token maps the decoder reads.

        Args:
            image: ImageNet-normalised ``(B, 3, H, W)``, ``H`` and ``W`` multiples of 14.

        Returns:
            ``(features, patch_h, patch_w)``: four ``(B, patch_h*patch_w, C)`` tensors and
            the patch grid ``(H / 14, W / 14)``.
        """
        check_frame(image, type(self).__name__)
        check_input_size(image.shape[-2], image.shape[-1])
        features = self.pretrained.get_intermediate_layers(image)
        return features, image.shape[-2] // PATCH_SIZE, image.shape[-1] // PATCH_SIZE

    def encode_layers(self, image: Tensor) -> tuple[list[Tensor], int, int]:
        """ViT, then the DPT's reassembly: ``(four layer*_rn maps, patch_h, patch_w)``."""
        features, patch_h, patch_w = self.encode(image)
        return self.depth_head.reassemble(features, patch_h, patch_w), patch_h, patch_w

    def _per_frame(self, image: Tensor) -> Tensor:
        """Relative inverse depth ``(B, H, W)`` of ImageNet-normalised images ``(B, 3, H, W)``."""
        # output_conv2 ends in a ReLU: the depth is already non-negative
        return self.depth_head(*self.encode(image)).squeeze(1)

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> Tensor:
        """An empty ``(B, 0)`` state: Depth Anything V2 carries nothing across frames."""
        if device is None:
            device = self.pretrained.cls_token.device
        return torch.zeros(batch_size, 0, device=device, dtype=dtype)

    def step(self, frame: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One frame ``(B, 3, H, W)`` -> ``(inverse_depth (B, H, W), state unchanged)``."""
        return self._per_frame(frame), state

    def forward_with_state(self, clip: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """All frames of ``(B, T, 3, H, W)`` at once -> ``((B, T, H, W), state unchanged)``."""
        check_clip(clip, type(self).__name__)
        depth = self._per_frame(clip.flatten(0, 1))  # (B, T, 3, H, W) -> (B*T, 3, H, W)
        return depth.unflatten(0, clip.shape[:2]), state  # (B*T, H, W) -> (B, T, H, W)

    def forward(self, clip: Tensor, state: Tensor | None = None) -> Tensor:
        """Relative inverse depth of a clip, or of an image batch as the official model takes.

        ``(B, T, 3, H, W)`` -> ``(B, T, H, W)``; ``(B, 3, H, W)`` -> ``(B, H, W)``.
        """
        if clip.ndim == 4:
            return self._per_frame(clip)
        if state is None:
            state = self.init_state(clip.shape[0], clip.device)
        return self.forward_with_state(clip, state)[0]
