"""DPT decoder of Depth Anything V2, exposed stage by stage.

Parameter names are the official checkpoint's ``depth_head.*`` keys without the
prefix (including the ``resConfUnit`` spelling and ``refinenet4.resConfUnit1``,
which the official model holds but never uses). The data flow, top to bottom:

1. :meth:`DPTDecoder.reassemble`: four ViT token maps -> 1x1 projections -> resize to
   x4, x2, x1, x1/2 of the patch grid -> 3x3 convs to the DPT width (``layer*_rn``).
2. Four fusion stages, coarse to fine: ``path_4`` at the patch grid, ``path_3`` at x2,
   ``path_2`` at x4, ``path_1`` at x8.
3. :meth:`DPTDecoder.head`: convs and a resize to the input resolution, one channel.

:meth:`DPTDecoder.forward` runs the stages in order; FlashDepth and the hybrid call the
stages one by one and add their temporal and fusion steps between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

PATCH_SIZE = 14
#: Bias of the last head convolution of an untrained decoder (relative inverse depth).
INITIAL_OUTPUT = 1.0
#: Channels between the two convolutions of ``output_conv2``.
HEAD_HIDDEN = 32


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convolutions that keep the width."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(features, features, kernel_size=3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` plus its refinement, same shape ``(B, features, H, W)``."""
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FeatureFusionBlock(nn.Module):
    """One DPT fusion stage: add a refined skip, refine, upsample, mix channels.

    Args:
        features: DPT width.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        # camelCase and "Conf" are the official checkpoint's spelling
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1)

    def forward(
        self, x: Tensor, skip: Tensor | None = None, size: Sequence[int] | None = None
    ) -> Tensor:
        """Fuse ``x`` (B, C, h, w) with ``skip`` (same shape) and resize to ``size`` (or x2)."""
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTScratch(nn.Module):
    """Holder of the ``scratch.*`` modules, named as in the official checkpoints.

    Args:
        out_channels: Channels of the four projections.
        features: DPT width.
    """

    def __init__(self, out_channels: Sequence[int], features: int) -> None:
        super().__init__()
        for i, channels in enumerate(out_channels, start=1):
            conv = nn.Conv2d(channels, features, kernel_size=3, padding=1, bias=False)
            self.add_module(f"layer{i}_rn", conv)
        for i in range(1, 5):
            self.add_module(f"refinenet{i}", FeatureFusionBlock(features))
        # path_4 has no skip input, so refinenet4.resConfUnit1 never runs; it stays for the
        # checkpoint keys. Frozen, it needs no gradient and plain DDP does not wait for one.
        self.refinenet4.resConfUnit1.requires_grad_(False)
        self.output_conv1 = nn.Conv2d(features, features // 2, kernel_size=3, padding=1)
        self.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, HEAD_HIDDEN, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(HEAD_HIDDEN, 1, kernel_size=1),
            nn.ReLU(),
        )
        # A fresh head must not start dead behind its final ReLU (a negative bias zeroes the
        # output and its gradient everywhere): start the output at ~1. Loaded weights replace it.
        nn.init.constant_(self.output_conv2[2].bias, INITIAL_OUTPUT)


class DPTDecoder(nn.Module):
    """Depth Anything V2's DPT head (``depth_head`` in the official checkpoints).

    Args:
        in_channels: ViT token width ``C``.
        features: DPT width (64 for ViT-S, 128 B, 256 L, 384 G).
        out_channels: Channels of the four projections (see ``VIT_CONFIGS``).
    """

    def __init__(self, in_channels: int, features: int, out_channels: Sequence[int]) -> None:
        super().__init__()
        if len(out_channels) != 4:
            raise ValueError(f"DPT needs 4 out_channels, got {list(out_channels)}.")
        self.features = features
        self.projects = nn.ModuleList(
            nn.Conv2d(in_channels, channels, kernel_size=1) for channels in out_channels
        )
        c1, c2, _, c4 = out_channels
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c1, c1, kernel_size=4, stride=4),
                nn.ConvTranspose2d(c2, c2, kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c4, c4, kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = DPTScratch(out_channels, features)
        self.grad_checkpointing = False

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute the fusion stages in the backward pass instead of storing them."""
        self.grad_checkpointing = enable

    def _run(self, module: nn.Module, *args: Any, **kwargs: Any) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False, **kwargs)
        return module(*args, **kwargs)

    def reassemble(self, features: Sequence[Tensor], patch_h: int, patch_w: int) -> list[Tensor]:
        """Turn four ViT token maps into the four ``layer*_rn`` feature maps.

        Args:
            features: Four ``(B, patch_h*patch_w, C)`` tensors, shallow to deep.
            patch_h: Patch-grid height ``H / 14``.
            patch_w: Patch-grid width ``W / 14``.

        Returns:
            ``(B, features, s*patch_h, s*patch_w)`` maps for ``s`` = 4, 2, 1, 1/2 (rounded up).
        """
        if len(features) != 4:
            raise ValueError(f"DPT needs 4 token maps, got {len(features)}.")
        return [self.reassemble_level(i, x, patch_h, patch_w) for i, x in enumerate(features)]

    def reassemble_level(self, level: int, tokens: Tensor, patch_h: int, patch_w: int) -> Tensor:
        """One token map ``(B, patch_h*patch_w, C)`` -> the ``layer{level+1}_rn`` feature map."""
        batch, count, dim = tokens.shape
        if count != patch_h * patch_w:
            raise ValueError(
                f"Token map {level} has {count} tokens, expected patch_h*patch_w = "
                f"{patch_h}*{patch_w} = {patch_h * patch_w}."
            )
        # (B, h*w, C) -> (B, C, h, w)
        x = tokens.transpose(1, 2).reshape(batch, dim, patch_h, patch_w)
        x = self.resize_layers[level](self.projects[level](x))
        return getattr(self.scratch, f"layer{level + 1}_rn")(x)

    def path_4_from_deepest(self, tokens: Tensor, patch_h: int, patch_w: int) -> Tensor:
        """path_4 from the deepest token map alone (path_4 reads only the size of layer 3).

        This is all a teacher of the hybrid model has to compute: one projection, one
        resize, one 3x3 conv and ``refinenet4``.
        """
        deepest = self.reassemble_level(3, tokens, patch_h, patch_w)
        return self._run(self.scratch.refinenet4, deepest, size=(patch_h, patch_w))

    def path_4(self, layers: Sequence[Tensor]) -> Tensor:
        """Deepest stage, at the patch grid (the size of ``layers[2]``)."""
        return self._run(self.scratch.refinenet4, layers[3], size=layers[2].shape[-2:])

    def path_3(self, path_4: Tensor, layers: Sequence[Tensor]) -> Tensor:
        """Second stage, at twice the patch grid (the size of ``layers[1]``)."""
        return self._run(self.scratch.refinenet3, path_4, layers[2], size=layers[1].shape[-2:])

    def path_2(self, path_3: Tensor, layers: Sequence[Tensor]) -> Tensor:
        """Third stage, at four times the patch grid (the size of ``layers[0]``)."""
        return self._run(self.scratch.refinenet2, path_3, layers[1], size=layers[0].shape[-2:])

    def path_1(self, path_2: Tensor, layers: Sequence[Tensor]) -> Tensor:
        """Finest stage, at eight times the patch grid."""
        return self._run(self.scratch.refinenet1, path_2, layers[0])

    def head_features(self, path_1: Tensor) -> Tensor:
        """``output_conv1(path_1)``: the head's ``features/2``-channel map at path_1's size."""
        return self.scratch.output_conv1(path_1)

    def depth_from_head_features(self, features: Tensor, patch_h: int, patch_w: int) -> Tensor:
        """Resize :meth:`head_features` to the input resolution and map them to one channel.

        The result is ``(B, 1, 14*ph, 14*pw)``.
        """
        size = (patch_h * PATCH_SIZE, patch_w * PATCH_SIZE)
        x = F.interpolate(features, size=size, mode="bilinear", align_corners=True)
        return self.scratch.output_conv2(x)

    def head(self, path_1: Tensor, patch_h: int, patch_w: int) -> Tensor:
        """Map ``path_1`` to one channel at the input resolution ``(B, 1, 14*ph, 14*pw)``."""
        return self.depth_from_head_features(self.head_features(path_1), patch_h, patch_w)

    def forward(self, features: Sequence[Tensor], patch_h: int, patch_w: int) -> Tensor:
        """Decode four ViT token maps into a one-channel map ``(B, 1, 14*ph, 14*pw)``.

        Args:
            features: Four ``(B, patch_h*patch_w, C)`` token maps, shallow to deep.
            patch_h: Patch-grid height.
            patch_w: Patch-grid width.
        """
        layers = self.reassemble(features, patch_h, patch_w)
        x = self.path_4(layers)
        x = self.path_3(x, layers)
        x = self.path_2(x, layers)
        x = self.path_1(x, layers)
        return self.head(x, patch_h, patch_w)
