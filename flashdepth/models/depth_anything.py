"""Depth Anything V2: DINOv2 encoder + DPT decoder, checkpoint-compatible.

The module names ``pretrained`` and ``depth_head`` make the ``state_dict`` keys those
of the official ``depth_anything_v2_<encoder>.pth`` files, which load with
``load_state_dict(torch.load(path, weights_only=True))`` (strict; the unused
``pretrained.mask_token`` is dropped on load).

Output: relative **inverse depth** (disparity), non-negative, in the arbitrary scale
of the training data (about 100/m for FlashDepth's metric recipes; DAv2's own
weights are affine-invariant: fit scale and shift before reading it as 1/m).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from flashdepth.models.dpt import DPTDecoder
from flashdepth.models.encoder import PATCH_SIZE, DinoV2Encoder, check_input_size, vit_config


class DepthAnythingV2(nn.Module):
    """Per-frame relative inverse depth with Depth Anything V2.

    Subclasses (FlashDepth) reuse :meth:`encode` and :meth:`decode` and insert their
    temporal component through ``decode(..., after_stage=...)``.

    Args:
        encoder: ``"vits"``, ``"vitb"``, ``"vitl"`` or ``"vitg"``.
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

    def encode(self, image: Tensor) -> tuple[list[Tensor], int, int]:
        """Run the ViT and return the four token maps the decoder reads.

        Args:
            image: ImageNet-normalised ``(B, 3, H, W)``, ``H`` and ``W`` multiples of 14.

        Returns:
            ``(features, patch_h, patch_w)``: four ``(B, patch_h*patch_w, C)`` tensors and
            the patch grid ``(H / 14, W / 14)``.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(
                f"Expected an image batch (B, 3, H, W), got shape {tuple(image.shape)}."
            )
        check_input_size(image.shape[-2], image.shape[-1])
        features = self.pretrained.get_intermediate_layers(image)
        return features, image.shape[-2] // PATCH_SIZE, image.shape[-1] // PATCH_SIZE

    def decode(
        self,
        features: Sequence[Tensor],
        patch_h: int,
        patch_w: int,
        after_stage: Callable[[int, Tensor], Tensor] | None = None,
        path_4: Tensor | None = None,
    ) -> Tensor:
        """Decode token maps into inverse depth ``(B, 14*patch_h, 14*patch_w)``, >= 0.

        Args:
            features: The token maps from :meth:`encode`.
            patch_h: Patch-grid height.
            patch_w: Patch-grid width.
            after_stage: Hook ``(k, x) -> x`` after DPT stage ``k`` (see
                :meth:`DPTDecoder.forward`).
            path_4: Replacement for the deepest DPT stage (hybrid fusion).
        """
        # output_conv2 ends in a ReLU: the depth is already non-negative
        return self.depth_head(features, patch_h, patch_w, after_stage, path_4).squeeze(1)

    def forward(self, image: Tensor) -> Tensor:
        """Relative inverse depth ``(B, H, W)`` of ImageNet-normalised images ``(B, 3, H, W)``."""
        return self.decode(*self.encode(image))
