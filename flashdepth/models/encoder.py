"""DINOv2 ViT encoder of Depth Anything V2, built on timm.

:class:`DinoV2Encoder` *is* a timm ``VisionTransformer`` (a subclass, not a wrapper),
so its ``state_dict`` keys are timm's, which are exactly the ``pretrained.*`` keys of
the official Depth Anything V2 checkpoints with the prefix stripped. Two things
differ from a stock timm model:

* the position embedding is resized with DINOv2's rule (:func:`interpolate_pos_embed`),
  not timm's antialiased one, so features at any size other than 518x518 match the
  released weights;
* :meth:`DinoV2Encoder.get_intermediate_layers` returns the normalised patch tokens of
  the blocks the DPT decoder reads, with activation checkpointing honoured.

Besides the four released sizes (:data:`VIT_CONFIGS`), :data:`TEST_VIT_CONFIGS` holds
``vitt``, a tiny ViT for fast tests and debugging that no released checkpoint fits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import SwiGLUPacked
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

PATCH_SIZE = 14
#: Side of the square patch grid the DINOv2 position embedding was trained on (518 / 14).
POS_EMBED_GRID = 37


@dataclass(frozen=True)
class VitConfig:
    """One Depth Anything V2 variant: its ViT and the width of its DPT decoder.

    Attributes:
        timm_name: timm model name with the same architecture; for a test size, the timm
            model it shrinks (``timm.create_model(timm_name, embed_dim=..., depth=...,
            num_heads=...)`` has its layout).
        embed_dim: Token width ``C``.
        depth: Number of transformer blocks.
        num_heads: Attention heads per block.
        layer_indices: Blocks whose outputs feed the DPT decoder.
        dpt_features: DPT width (channels of ``scratch.layer*_rn`` and the fusion blocks).
        dpt_out_channels: Channels of the four DPT projections.
    """

    timm_name: str
    embed_dim: int
    depth: int
    num_heads: int
    layer_indices: tuple[int, int, int, int]
    dpt_features: int
    dpt_out_channels: tuple[int, int, int, int]


#: The four Depth Anything V2 variants (DINOv2 ViT + DPT widths of the official checkpoints).
VIT_CONFIGS: dict[str, VitConfig] = {
    "vits": VitConfig(
        timm_name="vit_small_patch14_dinov2",
        embed_dim=384,
        depth=12,
        num_heads=6,
        layer_indices=(2, 5, 8, 11),
        dpt_features=64,
        dpt_out_channels=(48, 96, 192, 384),
    ),
    "vitb": VitConfig(
        timm_name="vit_base_patch14_dinov2",
        embed_dim=768,
        depth=12,
        num_heads=12,
        layer_indices=(2, 5, 8, 11),
        dpt_features=128,
        dpt_out_channels=(96, 192, 384, 768),
    ),
    "vitl": VitConfig(
        timm_name="vit_large_patch14_dinov2",
        embed_dim=1024,
        depth=24,
        num_heads=16,
        layer_indices=(4, 11, 17, 23),
        dpt_features=256,
        dpt_out_channels=(256, 512, 1024, 1024),
    ),
    "vitg": VitConfig(
        timm_name="vit_giant_patch14_dinov2",
        embed_dim=1536,
        depth=40,
        num_heads=24,
        layer_indices=(9, 19, 29, 39),
        dpt_features=384,
        dpt_out_channels=(1536, 1536, 1536, 1536),
    ),
}


#: Sizes with no released weights, for fast tests and debugging; built like the released ones
#: (timm ``VisionTransformer`` with DINOv2 semantics). ``vitt`` ("tiny", 48 wide; not timm's
#: 192-wide ViT-Ti) has 4 blocks, all read by the DPT, and a 32-wide DPT, the narrowest at which
#: both released Mamba configurations fit (expand x width a multiple of the head dim: 4 x 32 of
#: 32, 2 x 32 of 64), so every recipe and preset takes ``encoder: vitt`` with no other change.
#: Depth Anything V2 at this size has 0.43 M parameters (ViT 0.21 M), ViT-S's 24.8 M.
TEST_VIT_CONFIGS: dict[str, VitConfig] = {
    "vitt": VitConfig(
        timm_name="vit_small_patch14_dinov2",
        embed_dim=48,
        depth=4,
        num_heads=3,
        layer_indices=(0, 1, 2, 3),
        dpt_features=32,
        dpt_out_channels=(8, 16, 32, 48),
    ),
}


def vit_config(variant: str) -> VitConfig:
    """The :data:`VIT_CONFIGS` or :data:`TEST_VIT_CONFIGS` entry of ``variant``.

    Raises:
        ValueError: For an unknown name, listing the released sizes and the test size.
    """
    if variant in VIT_CONFIGS:
        return VIT_CONFIGS[variant]
    if variant in TEST_VIT_CONFIGS:
        return TEST_VIT_CONFIGS[variant]
    raise ValueError(
        f"Unknown Depth Anything V2 encoder {variant!r}; choose one of {sorted(VIT_CONFIGS)} "
        f"(or, for tests and debugging without released weights, {sorted(TEST_VIT_CONFIGS)})."
    )


def interpolate_pos_embed(pos_embed: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """Resize a DINOv2 position embedding to a patch grid, with DINOv2's own rule.

    The square patch part is resized with bicubic interpolation (no antialias,
    ``align_corners=False``) by ``scale_factor=((h + 0.1) / n, (w + 0.1) / n)``, not by
    a target size: the two give different values. The class-token entry is kept as is.
    On the native grid the embedding is returned unchanged.

    Args:
        pos_embed: ``(1, 1 + n*n, C)``, class token first.
        grid_hw: Target patch grid ``(h, w)``.

    Returns:
        ``(1, 1 + h*w, C)`` in the dtype of ``pos_embed``.
    """
    h, w = grid_hw
    num_patches = pos_embed.shape[1] - 1
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise ValueError(
            f"pos_embed has {num_patches} patch entries, not a square grid; "
            "expected shape (1, 1 + n*n, C)."
        )
    if (h, w) == (side, side):
        return pos_embed
    dim = pos_embed.shape[-1]
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    # (1, n*n, C) -> (1, C, n, n), in float32 as bicubic needs it
    patch_pos = patch_pos.float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    patch_pos = F.interpolate(
        patch_pos,
        scale_factor=((h + 0.1) / side, (w + 0.1) / side),
        mode="bicubic",
        align_corners=False,
        antialias=False,
    )
    # the +0.1 offset makes the output exactly (h, w); (1, C, h, w) -> (1, h*w, C)
    patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, h * w, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)


def check_input_size(height: int, width: int) -> None:
    """Raise a ``ValueError`` unless both sides are multiples of the patch size (14)."""
    if height % PATCH_SIZE == 0 and width % PATCH_SIZE == 0:
        return

    def nearest(n: int) -> str:
        low = max(PATCH_SIZE, n // PATCH_SIZE * PATCH_SIZE)
        high = math.ceil(n / PATCH_SIZE) * PATCH_SIZE
        return str(n) if n % PATCH_SIZE == 0 else f"{low} or {high}"

    raise ValueError(
        f"Input size {height}x{width} (HxW) is not a multiple of the ViT patch size "
        f"{PATCH_SIZE}; nearest valid sizes: height {nearest(height)}, width {nearest(width)}. "
        "Resize first, e.g. with flashdepth.transforms.Preprocess."
    )


class DinoV2Encoder(VisionTransformer):
    """DINOv2 ViT-S/B/L/G/14 as used by Depth Anything V2 (timm module, DINOv2 semantics).

    Built for a 518x518 position-embedding grid and accepts any input whose sides are
    multiples of 14. Official Depth Anything V2 ``pretrained.*`` weights load into it
    directly (prefix stripped): the unused ``mask_token`` is dropped and ViT-G's
    DINOv2 names ``mlp.w12``/``mlp.w3`` are read as timm's ``mlp.fc1``/``mlp.fc2``.

    Args:
        variant: ``"vits"``, ``"vitb"``, ``"vitl"`` or ``"vitg"``; ``"vitt"`` builds the tiny
            test size (:data:`TEST_VIT_CONFIGS`, random weights only).
    """

    def __init__(self, variant: str = "vits") -> None:
        config = vit_config(variant)
        mlp_args: dict[str, Any] = {}
        if variant == "vitg":
            # DINOv2's SwiGLU: fc1 (2*4096, 1536) packs [gate, value]; silu(gate) * value
            mlp_args = {"mlp_ratio": 2.66667 * 2, "mlp_layer": SwiGLUPacked, "act_layer": nn.SiLU}
        super().__init__(
            img_size=POS_EMBED_GRID * PATCH_SIZE,
            patch_size=PATCH_SIZE,
            num_classes=0,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            init_values=1e-5,
            dynamic_img_size=True,
            **mlp_args,
        )
        self.variant = variant
        self.layer_indices = config.layer_indices

    def _pos_embed(self, x: Tensor) -> Tensor:
        """Prepend the class token and add the DINOv2-resized position embedding.

        Args:
            x: Patch embeddings ``(B, h, w, C)``.

        Returns:
            Tokens ``(B, 1 + h*w, C)``.
        """
        batch, h, w, dim = x.shape
        # (B, h, w, C) -> (B, 1 + h*w, C); like DINOv2, the concatenation promotes
        # autocast's half-precision patches to the class token's dtype
        cls_token = self.cls_token.expand(batch, -1, -1)
        tokens = torch.cat([cls_token, x.reshape(batch, h * w, dim)], dim=1)
        return tokens + interpolate_pos_embed(self.pos_embed, (h, w)).to(tokens.dtype)

    def forward_features(self, x: Tensor, **kwargs: Any) -> Tensor:
        """The final normalised tokens ``(B, 1 + h*w, C)`` (timm's), after checking the size."""
        check_input_size(x.shape[-2], x.shape[-1])
        return super().forward_features(x, **kwargs)

    def get_intermediate_layers(  # type: ignore[override]
        self, x: Tensor, indices: Sequence[int] | None = None
    ) -> list[Tensor]:
        """Normalised patch tokens after the given blocks (DINOv2's ``norm=True``).

        Args:
            x: ImageNet-normalised images ``(B, 3, H, W)``, ``H`` and ``W`` multiples of 14.
            indices: Block indices (0-based); defaults to the ones the DPT decoder reads.

        Returns:
            One ``(B, h*w, C)`` tensor per index, in block order, with ``h = H / 14`` and
            ``w = W / 14``; the class token is dropped.
        """
        check_input_size(x.shape[-2], x.shape[-1])
        wanted = set(self.layer_indices if indices is None else indices)
        if not wanted or min(wanted) < 0 or max(wanted) >= len(self.blocks):
            raise ValueError(
                f"Block indices {sorted(wanted)} are out of range for {self.variant} "
                f"({len(self.blocks)} blocks, indices 0..{len(self.blocks) - 1})."
            )
        tokens = self._pos_embed(self.patch_embed(x))  # (B, 1 + h*w, C)
        outputs = []
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            if self.grad_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
            if i in wanted:
                outputs.append(self.norm(tokens[:, 1:]))
        return outputs

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Tensor],
        prefix: str,
        local_metadata: Mapping[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # Accept the official DINOv2 layout: drop mask_token, rename SwiGLU w12/w3.
        # `state_dict` is load_state_dict's private copy, so editing it is safe.
        state_dict.pop(prefix + "mask_token", None)
        for key in [k for k in state_dict if k.startswith(prefix + "blocks.")]:
            renamed = key.replace(".mlp.w12.", ".mlp.fc1.").replace(".mlp.w3.", ".mlp.fc2.")
            if renamed != key:
                state_dict[renamed] = state_dict.pop(key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
